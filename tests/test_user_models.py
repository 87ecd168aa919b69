"""Models from the user's code (`model.name: file.py:factory` or `package.module:factory`)
and their BatchNorm statistics: refused for certified methods unless recomputed on the
retain set, and then free of every forget example."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from src.config import load_config, pretrained_key, run_id
from src.data.base_datamodule import Split
from src.data.datamodule import get_datamodule
from src.errors import ConfigError
from src.models.buffers import recompute_running_stats_
from src.plugins import resolve
from src.runner import attach_run, make_plan
from src.tracking import RunLogger
from src.training.flat_model import FlatModel
from src.training.trainer import Console, Evaluator, Trainer, build_model
from tests.conftest import QUICKSTART

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    def conv_bn(input_shape, num_classes, generator=None):
        h, w, c = input_shape
        net = nn.Sequential(nn.Conv2d(c, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(4),
                            nn.Flatten(), nn.Linear(6 * (h // 4) * (w // 4), 16), nn.BatchNorm1d(16), nn.ReLU(),
                            nn.Linear(16, num_classes))
        for p in net.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.1, generator=generator)
        return net

    def plain(input_shape, num_classes, generator=None):
        d = 1
        for s in input_shape:
            d *= s
        return nn.Sequential(nn.Flatten(), nn.Linear(d, num_classes))

    class Counter(nn.Module):
        """A user layer whose buffer counts the examples it saw: data-dependent, not BatchNorm."""
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(()))
        def forward(self, x):
            if self.training:
                self.seen += x.shape[0]
            return x

    def counting(input_shape, num_classes, generator=None):
        return nn.Sequential(Counter(), plain(input_shape, num_classes, generator))

    def broken(input_shape, num_classes, generator=None):
        raise ValueError("my bug")

    def not_a_module(input_shape, num_classes, generator=None):
        return 42

    NOT_CALLABLE = 3
''')

GC = ["unlearning.algorithm=iteration"]
FT = ["unlearning.algorithm=ft", "unlearning.max_lr=0.01", "unlearning.weight_decay=0.0005"]


@pytest.fixture
def user_dir(tmp_path):
    """A user's folder: nets.py beside a config in it, the config naming 'nets.py:...'."""
    (tmp_path / "nets.py").write_text(NETS)
    return tmp_path


def config_in(directory, model_name, overrides=()):
    text = QUICKSTART.read_text().replace("name: tiny_net", f"name: {model_name}")
    assert model_name in text
    path = directory / "experiment.yaml"
    path.write_text(text)
    return load_config(path, list(overrides))


def test_a_factory_from_a_file_beside_the_config_counts_its_parameters(user_dir, monkeypatch):
    monkeypatch.chdir(user_dir.parent)  # relative to the config file, not the working directory
    config = config_in(user_dir, "nets.py:plain")
    assert config.model.name == f"{user_dir / 'nets.py'}:plain"
    plan = make_plan(config)
    assert plan.num_parameters == 28 * 28 * 10 + 10  # the certificates' d: one Linear(784, 10)
    assert plan.as_dict()["num_parameters"] == 7850
    # run ids and cache keys name the file by its content: a moved folder keeps them, an edit changes them
    ids = run_id(config), pretrained_key(config)
    moved = user_dir.parent / "moved"
    user_dir.rename(moved)
    again = config_in(moved, "nets.py:plain")
    assert (run_id(again), pretrained_key(again)) == ids
    assert pretrained_key(again).startswith("mnist_5k-nets.plain-")
    (moved / "nets.py").write_text(NETS + "\n# edited\n")
    edited = config_in(moved, "nets.py:plain")
    assert run_id(edited) != ids[0] and pretrained_key(edited) != ids[1]


def test_a_factory_from_an_import_path(tmp_path, monkeypatch):
    package = tmp_path / "site" / "userpkg_i25"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    config = config_in(tmp_path, "userpkg_i25.nets:conv_bn", ["model.batchnorm_stats=retain"])
    assert config.model.name == "userpkg_i25.nets:conv_bn"
    plan = make_plan(config)
    # conv 1*6*9+6, BN 2*6, dense 6*7*7*16+16, BN 2*16, dense 16*10+10: BN weights and biases count, stats do not
    assert plan.num_parameters == 60 + 12 + 4720 + 32 + 170


@pytest.mark.parametrize("name, message", [
    ("missing.py:plain", "the file .*missing.py does not exist"),
    ("nets.py:absent", "has no attribute 'absent'.*conv_bn"),
    ("nets.py:broken", "nets.py:broken' failed .*ValueError: my bug"),
    ("nets.py:not_a_module", "returned a int, expected a torch.nn.Module"),
    ("nets.py:NOT_CALLABLE", "is a int, expected a function"),
    ("no_such_package_i25.nets:plain", "no module named 'no_such_package_i25'"),
])
def test_bad_factories_are_one_line_errors_naming_the_key(user_dir, name, message):
    with pytest.raises(ConfigError, match=message) as error:
        make_plan(config_in(user_dir, name))
    assert str(error.value).startswith("model.name: ") and "\n" not in str(error.value)


def test_an_unknown_plain_name_lists_the_builtins_and_the_file_form(user_dir):
    with pytest.raises(ConfigError, match="known: 'two_layer_net'.*'file.py:function'"):
        config_in(user_dir, "resnet9000")


def test_batchnorm_is_refused_for_certified_methods_naming_the_layer(user_dir):
    with pytest.raises(ConfigError, match=r"model.batchnorm_stats: .*'1' \(BatchNorm2d\), '6' \(BatchNorm1d\)"
                                          r".*'iteration' certifies the parameters only"):
        make_plan(config_in(user_dir, "nets.py:conv_bn", GC))
    with pytest.raises(ConfigError, match="batchnorm_stats"):
        make_plan(config_in(user_dir, "nets.py:conv_bn", ["unlearning.algorithm=retrain"]))
    assert make_plan(config_in(user_dir, "nets.py:conv_bn", GC + ["model.batchnorm_stats=retain"])).privacy \
        .certified_epsilon is not None
    # empirical methods certify nothing: they keep the statistics as training left them
    assert make_plan(config_in(user_dir, "nets.py:conv_bn", FT)).privacy.certified_epsilon is None


def test_data_dependent_buffers_of_other_layers_and_dp_sgd_are_refused(user_dir):
    with pytest.raises(ConfigError, match=r"not BatchNorm statistics \(0.seen\)"):
        make_plan(config_in(user_dir, "nets.py:counting", GC + ["model.batchnorm_stats=retain"]))
    make_plan(config_in(user_dir, "nets.py:counting", FT))
    dp = ["unlearning.algorithm=dp-sgd", "training.dp_sgd.l2_norm_clip=1", "training.dp_sgd.target_epsilon=1",
          "training.dp_sgd.target_delta=1e-5"]
    with pytest.raises(ConfigError, match="training.dp_sgd cannot train it"):
        make_plan(config_in(user_dir, "nets.py:conv_bn", dp + ["model.batchnorm_stats=retain"]))


def test_the_audit_refuses_batchnorm_before_any_training(user_dir):
    from src.audit.audit import check_auditable

    with pytest.raises(ConfigError, match=r"the audit .* BatchNorm running statistics \(layers 1, 6\)"):
        check_auditable(config_in(user_dir, "nets.py:conv_bn", GC + ["model.batchnorm_stats=retain"]))
    check_auditable(config_in(user_dir, "nets.py:plain", GC))


def test_the_memorization_estimate_refuses_batchnorm_in_the_plan(user_dir):
    memorization = FT + ["dataset.forget.strategy=memorization"]
    with pytest.raises(ConfigError, match=r"the memorization estimate .* BatchNorm running statistics"):
        make_plan(config_in(user_dir, "nets.py:conv_bn", memorization))
    make_plan(config_in(user_dir, "nets.py:plain", memorization))


# -- recomputing the statistics -----------------------------------------------------------


def mlp_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 6), nn.BatchNorm1d(6),
                         nn.Linear(6, 3))


def test_recomputed_statistics_are_those_of_exactly_the_retain_set():
    model = FlatModel(mlp_bn())
    retain = torch.randn(300, 5) * 3 + 1
    with model.mode(True), torch.no_grad():  # statistics of other data first
        model(torch.randn(64, 5) * 10)
    model.recompute_running_stats(retain)
    params = model.unflatten(model.theta.detach())
    # independent: each layer's input over all 300 retain examples, normalised by the batch as in training
    h1 = F.linear(retain, params["0.weight"], params["0.bias"])
    bn1 = model.module[1]
    torch.testing.assert_close(bn1.running_mean, h1.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bn1.running_var, h1.var(0, unbiased=True), rtol=1e-5, atol=1e-6)
    h2 = F.linear(F.relu(F.batch_norm(h1, None, None, params["1.weight"], params["1.bias"], training=True)),
                  params["3.weight"], params["3.bias"])
    bn2 = model.module[4]
    torch.testing.assert_close(bn2.running_mean, h2.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn2.running_var, h2.var(0, unbiased=True), rtol=1e-5, atol=1e-6)
    # in chunks, each weighted by its size: still the retain mean at the first layer
    chunked = mlp_bn()
    recompute_running_stats_(chunked.train(), chunked, retain, chunk=128)  # 3 chunks of 100
    torch.testing.assert_close(chunked[1].running_mean, h1.mean(0), rtol=1e-6, atol=1e-6)


def test_recomputed_statistics_do_not_depend_on_what_the_buffers_held():
    retain = torch.randn(200, 5)
    results = []
    for seen_before in (torch.randn(50, 5), torch.randn(50, 5) * 100 + 7):  # two different forget sets
        model = FlatModel(mlp_bn())
        with model.mode(True), torch.no_grad():
            model(seen_before)
        model.recompute_running_stats(retain)
        results.append(model.state_dict())
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name


def test_evaluation_leaves_the_statistics_alone_and_checkpoints_carry_them():
    model = FlatModel(mlp_bn())
    with model.mode(True), torch.no_grad():
        model(torch.randn(40, 5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Evaluator(model)(Split(torch.randn(30, 5) * 50, torch.zeros(30, dtype=torch.long)))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fresh = FlatModel(mlp_bn())
    fresh.load_state_dict(after)
    assert all(torch.equal(fresh.state_dict()[k], after[k]) for k in after)
    assert "1.running_mean" in after and "4.num_batches_tracked" in after


def _unlearn(config, data, tmp_path, tag):
    """A certified run's unlearning phase from one fixed 'pretrained' model whose statistics
    have seen this world's forget set."""
    plan = make_plan(config, data.sizes)
    model = build_model(config, data.input_shape, "cpu")
    with model.mode(True), torch.no_grad():
        model(data.train.x[:256])
        model(data.forget.x)
    algorithm = attach_run(plan, torch.device("cpu"), data=data)
    run_dir = tmp_path / tag
    run_dir.mkdir()
    logger = RunLogger(run_dir, config.to_dict(), tag)
    Trainer(config, data, model, algorithm, logger, Console(quiet=True)).unlearn()
    logger.close()
    return model


def test_no_forget_example_reaches_the_released_statistics(user_dir, tmp_path):
    config = config_in(user_dir, "nets.py:conv_bn", GC + ["model.batchnorm_stats=retain", "unlearning.epochs=3"])
    full = get_datamodule(config, "cpu")
    cut = {"train": 512, "val": 64, "forget": 64, "retain": 448, "test": 64}  # a few steps
    data = dataclasses.replace(full, **{k: Split(getattr(full, k).x[:n], getattr(full, k).y[:n]) for k, n in cut.items()})
    other_forget = Split(torch.randn_like(data.forget.x) * 5, torch.flip(data.forget.y, (0,)))
    other = dataclasses.replace(data, forget=other_forget)
    a = _unlearn(config, data, tmp_path, "a")
    b = _unlearn(config, other, tmp_path, "b")
    state_a, state_b = a.state_dict(), b.state_dict()
    assert set(state_a) == set(state_b) and "1.running_var" in state_a
    for name in state_a:  # theta and the statistics: bit for bit the same, whatever the forget set held
        assert torch.equal(state_a[name], state_b[name]), name
    # and the statistics are the retain set's, recomputed on the released theta
    check = FlatModel(resolve("nets.py:conv_bn", key="model.name", base_dir=user_dir)((28, 28, 1), 10))
    check.load_state_dict(state_a)
    check.recompute_running_stats(data.retain.x)
    for name, value in check.state_dict().items():
        assert torch.equal(value, state_a[name]), name
    # without the recomputation, the forget set would have stayed in them
    kept = config_in(user_dir, "nets.py:conv_bn", FT + ["unlearning.epochs=1"])
    a, b = _unlearn(kept, data, tmp_path, "c"), _unlearn(kept, other, tmp_path, "d")
    assert not torch.equal(a.state_dict()["1.running_mean"], b.state_dict()["1.running_mean"])


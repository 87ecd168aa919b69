"""DP-SGD training with group privacy (Figure 3's baseline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from src.config import load_config
from src.data.batches import make_generator
from src.errors import CheckpointError
from src.models.model import ModelFactory
from src.runner import make_plan, resolve_device, run
from src.training.dp_sgd import DPSGD, clipped_gradient_sum, per_example_gradients
from src.training.flat_model import FlatModel
from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer
from src.training.trainer import Console
from tests.conftest import QUICKSTART, UPSTREAM_CONFIGS
from tests.datafiles import write_feature_files

UPSTREAM = ["compat.group_privacy=upstream", "compat.dp_sgd_sampling=shuffle"]


def feature_model(seed=0):
    return FlatModel(ModelFactory.create_model("three_layer_net", 10, (512,), seed=seed))


def test_per_example_gradients_equal_a_loop_over_single_examples():
    model = feature_model()
    x, y = torch.randn(7, 512), torch.randint(0, 10, (7,))
    grads, (losses, logits) = per_example_gradients(model, x, y)
    flat = torch.cat([grads[name].flatten(1) for name in model.names], 1)
    assert flat.shape == (7, model.num_parameters)
    for i in range(7):
        theta = model.theta.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x[i:i + 1], theta), y[i:i + 1])
        (expected,) = torch.autograd.grad(loss, theta)
        assert torch.allclose(flat[i], expected, atol=1e-6)
        assert losses[i].item() == pytest.approx(loss.item(), rel=1e-5)
    # the clipped sum: each example's gradient scaled to norm <= C, weighted, summed
    weight = torch.tensor([1, 1, 0, 1, 1, 1, 0.0])
    clipped, _, _ = clipped_gradient_sum(model, x, y, 0.01, weight)
    norms = flat.norm(dim=1)
    expected = ((torch.clamp(0.01 / norms, max=1) * weight)[:, None] * flat).sum(0)
    assert torch.allclose(clipped, expected, atol=1e-7)


def test_the_clipped_sum_has_norm_at_most_n_times_c():
    model = feature_model()
    x = torch.randn(50, 512) * torch.logspace(-3, 2, 50)[:, None]
    y = torch.randint(0, 10, (50,))
    clipped, _, _ = clipped_gradient_sum(model, x, y, 0.5, torch.ones(50))
    assert clipped.norm() <= 50 * 0.5 + 1e-5
    # unclipped gradients pass through unchanged: a huge clip is the plain summed gradient
    theta = model.theta.detach().clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(F.cross_entropy(model(x, theta), y, reduction="sum"), theta)
    huge, _, _ = clipped_gradient_sum(model, x, y, 1e9, torch.ones(50))
    assert torch.allclose(huge, plain, rtol=1e-4, atol=1e-5)


def _dp(sampling="poisson", noise_multiplier=3.0, train_size=1000):
    from src.data.base_datamodule import Split
    from src.training.dp_sgd import DPSGDCalibration

    calibration = DPSGDCalibration(
        l2_norm_clip=0.5, noise_multiplier=noise_multiplier, sampling_rate=128 / train_size, steps=80,
        sampling=sampling, group_size=10, group_rule="tight", target_epsilon=50, target_delta=1e-5, train_epsilon=5.0,
        train_delta=1e-6, achieved_train_epsilon=4.9, certified_epsilon=49.0, certified_delta=1e-5, seconds=0.0)
    model = feature_model()
    split = Split(torch.randn(train_size, 512), torch.randint(0, 10, (train_size,)))
    return DPSGD(calibration, model, split, 128, seed=3), model


@pytest.mark.parametrize("sampling", ["poisson", "shuffle"])
def test_the_noise_has_std_clip_times_multiplier_over_the_batch_size(sampling):
    dp, model = _dp(sampling)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, load_config(QUICKSTART).training, 0.0),
                                   constant_schedule(1.0))
    idx = torch.arange(100)
    clipped, _, _ = clipped_gradient_sum(model, dp.split.x[idx], dp.split.y[idx], 0.5, torch.ones(100))
    before = model.theta.detach().clone()
    dp.step(idx, optimizer)
    denominator = 128 if sampling == "poisson" else 100  # expected vs actual batch size
    noise = -(model.theta.detach() - before) * denominator - clipped
    standardised = noise / (0.5 * 3.0)
    assert abs(standardised.mean().item()) < 0.05 and standardised.var().item() == pytest.approx(1.0, abs=0.05)
    # fresh noise at the next step
    before = model.theta.detach().clone()
    clipped, _, _ = clipped_gradient_sum(model, dp.split.x[idx], dp.split.y[idx], 0.5, torch.ones(100))
    dp.step(idx, optimizer)
    second = (-(model.theta.detach() - before) * denominator - clipped) / 1.5
    assert torch.corrcoef(torch.stack([standardised, second]))[0, 1].abs() < 0.05


def test_poisson_batches_for_the_steps_the_accountant_assumes():
    dp, _ = _dp("poisson", train_size=6400)
    batches = dp.batches(make_generator(0, "cpu"))
    assert len(batches) == math.ceil(6400 / 128)
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float)
    assert sizes.mean().item() == pytest.approx(128, abs=3 * math.sqrt(128 / len(batches)) + 1)
    shuffled = _dp("shuffle", train_size=6400)[0].batches(make_generator(0, "cpu"))
    assert [len(b) for b in shuffled] == [128] * 50


def _reference_plan(folder, compat=()):
    path = sorted((UPSTREAM_CONFIGS / "dp_sgd_runs" / folder).glob("*.yaml"))[0]
    return make_plan(load_config(path, list(compat))).privacy


@pytest.mark.parametrize("folder, expected", [("dp-sgd-cifar10-fc", 17.748), ("dp-sgd-cifar100-fc", 25.068)])
def test_the_reference_noise_multiplier_under_the_reference_switches(folder, expected):
    privacy = _reference_plan(folder, UPSTREAM)
    assert round(privacy.details["dp_sgd_noise_multiplier"], 3) == expected
    assert privacy.details["group_size"] == 225
    assert privacy.details["train_epsilon"] == pytest.approx(50 / 225)
    assert privacy.details["train_delta"] == pytest.approx(2.4087170662168987e-27, rel=1e-9)
    # the run logs the reference's claim, and says it does not hold
    assert privacy.certificate_valid is False and privacy.certified_epsilon is None
    assert any("dp_sgd_sampling: shuffle" in r for r in privacy.invalid_reasons)


@pytest.mark.parametrize("folder, expected", [("dp-sgd-cifar10-fc", 18.0344), ("dp-sgd-cifar100-fc", 25.4254)])
def test_the_tight_lemma_needs_slightly_more_noise_and_certifies_the_target(folder, expected):
    privacy = _reference_plan(folder, ["compat.group_privacy=tight"])
    assert privacy.details["dp_sgd_noise_multiplier"] == pytest.approx(expected, abs=1e-4)
    assert privacy.certificate_valid is True
    assert privacy.certified_epsilon <= 50 and privacy.certified_delta <= 1e-5


def test_the_exact_default_needs_about_30_percent_less_noise_for_figure_3():
    # Figure 3's DP-SGD baseline (epsilon 50, delta 1e-5 for the k = 225 forget examples,
    # q = 128/45000, 50 epochs): the exact accountant against the tight lemma's 18.0344
    privacy = _reference_plan("dp-sgd-cifar10-fc")
    sigma = privacy.details["dp_sgd_noise_multiplier"]
    assert privacy.details["group_privacy"] == "exact"
    assert privacy.details["lemma_noise_multiplier"] == pytest.approx(18.0344, abs=1e-4)
    assert sigma == pytest.approx(12.754, abs=0.01)  # 29% less noise
    assert privacy.certificate_valid is True
    assert privacy.certified_epsilon == 50 and 0.99e-5 < privacy.certified_delta <= 1e-5


def test_the_upstream_group_rule_alone_understates_delta():
    privacy = _reference_plan("dp-sgd-cifar10-fc", ["compat.group_privacy=upstream"])
    assert privacy.certificate_valid is False
    assert privacy.certified_delta == pytest.approx(5.02e-5, rel=0.01)  # the original code: 5.02x the target


@pytest.fixture
def features_config(tmp_path, session_checkpoints):
    write_feature_files(tmp_path / "features", "cifar10", n_train=1000, n_test=200, n_classes=10, seed=1)

    def make(*overrides):
        return load_config(QUICKSTART, [
            "dataset.name=cifar10_feature", f"dataset.features_root={tmp_path / 'features'}",
            "dataset.input_shape=[512]", "dataset.forget_split=0.01", "model.name=three_layer_net",
            "training.epochs=2", "training.pretrained=false", "training.dp_sgd.l2_norm_clip=0.5",
            "training.dp_sgd.target_epsilon=50", "training.dp_sgd.target_delta=1e-5", "training.dp_sgd.seed=1234",
            "compat.group_privacy=tight",  # the lemma calibrates in a second; the exact rule has its own tests
            "unlearning.algorithm=dp-sgd", "unlearning.epochs=2", f"logs_dir={tmp_path / 'logs'}",
            f"checkpoints_dir={session_checkpoints}", *overrides])

    return make


def test_dp_sgd_end_to_end_on_feature_files(features_config, tmp_path):
    config = features_config()
    plan = make_plan(config)
    assert plan.privacy.details["group_size"] == 9 and plan.privacy.noisy_steps == 0
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    rows = [json.loads(line) for line in (tmp_path / "logs" / plan.run_id / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    assert {"train_epsilon", "train_delta", "dp_sigma", "epsilon", "delta", "certified_epsilon",
            "certified_delta", "Val (Unlearn)_accuracy", "Test_accuracy"} <= keys
    assert summary["certificate"]["epsilon"] == 50 and summary["certificate"]["delta"] == 1e-5
    assert summary["certificate_valid"] is True
    assert summary["last_logged"]["dp_sigma"] == pytest.approx(plan.privacy.details["dp_sgd_noise_multiplier"])
    # the checkpoint records how the model was trained
    ckpt = torch.load(tmp_path / "logs" / plan.run_id / "ckpt" / "checkpoint_2.pt", weights_only=True)
    assert ckpt["meta"]["dp_sgd"]["noise_multiplier"] == summary["last_logged"]["dp_sigma"]
    assert ckpt["meta"]["dp_sgd"]["group_size"] == 9


def test_dp_sgd_refuses_a_model_not_trained_for_its_certificate(features_config, tmp_path):
    trained = features_config("name=trained")
    run(trained, None, resolve_device("cpu"), Console(quiet=True))
    ckpt = tmp_path / "logs" / make_plan(trained).run_id / "ckpt"
    # another forget-set size needs another noise multiplier
    with pytest.raises(CheckpointError, match="group_size|noise_multiplier"):
        run(features_config(f"training.pretrained={ckpt}", "dataset.forget_split=0.02", "name=other"), None,
            resolve_device("cpu"), Console(quiet=True))
    # a model trained without DP-SGD has no certificate at all
    plain = features_config("training.dp_sgd=null", "unlearning.algorithm=retrain", "name=plain")
    run(plain, None, resolve_device("cpu"), Console(quiet=True))
    plain_ckpt = tmp_path / "logs" / make_plan(plain).run_id / "ckpt"
    with pytest.raises(CheckpointError, match="was not trained with DP-SGD"):
        run(features_config(f"training.pretrained={plain_ckpt}", "name=plainload"), None, resolve_device("cpu"),
            Console(quiet=True))
    assert not list((tmp_path / "logs").glob("*.partial-*"))


def test_a_forged_record_is_refused_and_a_foreign_one_is_named(features_config, tmp_path):
    trained = features_config("name=trained")
    run(trained, None, resolve_device("cpu"), Console(quiet=True))
    genuine = tmp_path / "logs" / make_plan(trained).run_id / "ckpt" / "checkpoint_2.pt"
    plain = features_config("training.dp_sgd=null", "unlearning.algorithm=retrain", "name=plain")
    run(plain, None, resolve_device("cpu"), Console(quiet=True))
    plain_ckpt = torch.load(tmp_path / "logs" / make_plan(plain).run_id / "ckpt" / "checkpoint_2.pt",
                            weights_only=True)
    record = torch.load(genuine, weights_only=True)["meta"]
    # a model trained without DP-SGD, given the DP model's record (its hash included)
    forged = tmp_path / "forged.pt"
    torch.save({"state_dict": plain_ckpt["state_dict"], "meta": record}, forged)
    with pytest.raises(CheckpointError, match="does not match its weights"):
        run(features_config(f"training.pretrained={forged}", "name=forged"), None, resolve_device("cpu"),
            Console(quiet=True))
    # ... or with the hash removed
    unbound = tmp_path / "unbound.pt"
    torch.save({"state_dict": plain_ckpt["state_dict"], "meta": {k: v for k, v in record.items()
                                                                  if k != "content_sha256"}}, unbound)
    with pytest.raises(CheckpointError, match="no content hash"):
        run(features_config(f"training.pretrained={unbound}", "name=unbound"), None, resolve_device("cpu"),
            Console(quiet=True))
    # the genuine file loads, and its certificate says what it rests on
    config = features_config(f"training.pretrained={genuine}", "name=genuine")
    assert str(genuine) in make_plan(config).as_dict()["certificate_rests_on"]
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    assert summary["certificate_valid"] is True and str(genuine) in summary["certificate_rests_on"]
    # a model from this run states nothing of the kind
    assert "certificate_rests_on" not in make_plan(trained).as_dict()
    assert not list((tmp_path / "logs").glob("*.partial-*"))


def test_the_exact_accountant_end_to_end(features_config, tmp_path):
    config = features_config("compat.group_privacy=exact", "name=exact")
    plan = make_plan(config)
    details = plan.privacy.details
    assert details["group_privacy"] == "exact" and details["train_epsilon"] is None
    assert details["dp_sgd_noise_multiplier"] < details["lemma_noise_multiplier"]
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    assert summary["certificate_valid"] is True and summary["certified_epsilon"] == 50
    assert summary["certified_delta"] <= 1e-5 and summary["last_logged"]["dp_sigma"] == details["dp_sgd_noise_multiplier"]
    ckpt = torch.load(tmp_path / "logs" / plan.run_id / "ckpt" / "checkpoint_2.pt", weights_only=True)
    assert ckpt["meta"]["dp_sgd"]["group_rule"] == "exact"


def test_release_mode_needs_a_model_whose_dp_noise_no_seed_replays(features_config, tmp_path):
    from src.config import pretrained_key

    research = features_config("name=research")
    assert pretrained_key(features_config("secure_rng=true")) != pretrained_key(research)
    run(research, None, resolve_device("cpu"), Console(quiet=True))
    ckpt = tmp_path / "logs" / make_plan(research).run_id / "ckpt"
    with pytest.raises(CheckpointError, match="research mode"):
        run(features_config(f"training.pretrained={ckpt}", "secure_rng=true", "name=release"), None,
            resolve_device("cpu"), Console(quiet=True))
    # trained in release mode: DP-SGD's noise and memberships from the OS, nothing written of them
    released = features_config("secure_rng=true", "name=released")
    summary = run(released, None, resolve_device("cpu"), Console(quiet=True))
    assert summary["releasable"] is True and summary["certificate_valid"] is True
    rows = [json.loads(line) for line in (tmp_path / "logs" / make_plan(released).run_id / "metrics.jsonl")
            .read_text().splitlines()]
    assert not any("train_loss" in row for row in rows)

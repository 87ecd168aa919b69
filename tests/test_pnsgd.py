"""Noisy mini-batch SGD unlearning (`pnsgd`) in the framework: the chain, the refusals of
what its certificate assumes, and end-to-end runs on the bundled MNIST digits 3 vs 8 that
take exactly the steps their dry run plans."""

from __future__ import annotations

import math

import pytest
import torch

from src.config import validate_config
from src.errors import ConfigError
from tests.conftest import run_main
from tests.test_langevin import dry_run, langevin_config, plan_of, read_rows, refused, write

N_TRAIN = 720


def pnsgd_config(tmp_path, checkpoints, **overrides) -> dict:
    """mnist_5k_3v8, 4 examples forgotten, batches of 24 (J = 30), sigma 0.05, R = 10."""
    base = {"dataset.batch_size": 24, "training.algorithm": "pnsgd", "training.epochs": 20, "training.langevin": None,
            "training.pnsgd": {"sigma": 0.05, "projection_radius": 10.0}, "unlearning.algorithm": "pnsgd",
            "unlearning.epochs": 4, "unlearning.langevin": None, "unlearning.pnsgd": {"epsilon_target": 0.1},
            "name": "pn"}
    return langevin_config(tmp_path, checkpoints, **{**base, **overrides})


def test_the_plan_is_the_accountant_s(tmp_path):
    from src.privacy.pnsgd import MiniBatchChain, smallest_epochs

    plan = plan_of(pnsgd_config(tmp_path, tmp_path)).privacy
    chain = MiniBatchChain(n=N_TRAIN, batch_size=24, batches=30, m=0.05, eta=3.3, M=1.0, sigma=0.05, radius=10.0)
    expected = smallest_epochs(0.1, 4, chain, 1e-5)
    assert plan.details["pnsgd_epochs"] == expected.steps == 2
    assert plan.noisy_steps == 2 * 30 and plan.certified_epsilon == expected.epsilon <= 0.1
    assert plan.sigma_t[0] == pytest.approx(math.sqrt(2 * 3.3) * 0.05)


def test_a_pnsgd_run_takes_exactly_its_planned_steps(tmp_path, session_checkpoints, capsys):
    path = write(tmp_path, pnsgd_config(tmp_path, session_checkpoints))
    plan = dry_run(path, capsys)
    assert plan["noisy_steps"] == 60 and plan["pnsgd_batches_per_epoch"] == 30
    assert run_main("--config", path, "--quiet") == 0
    _, rows, summary = read_rows(tmp_path)
    noisy = [r for r in rows if r.get("sigma_t", 0) > 0]
    assert len(noisy) == 60 == summary["noisy_steps"] == summary["certificate"]["stop_unlearn"]
    assert [r["state_step"] for r in noisy] == list(range(1, 61))
    (request,) = [r for r in rows if "request" in r]
    assert request["request_steps"] == 60 and request["request_epochs"] == 2 and request["state_step"] == 60
    assert summary["certificate"]["certified_epsilon"] == plan["certified_epsilon"]
    # the post-phase steps carry no noise, and the certificate row comes right after step 60
    assert all(r["sigma_t"] == 0 for r in rows if r.get("state_step", 0) > 60 and "sigma_t" in r)
    from src.training.checkpoints import load_checkpoint

    _, meta = load_checkpoint(plan["pretrained_path"])
    record = meta["pnsgd"]
    assert (record["batches"], record["smallest_batch"], record["R"], record["T"], record["n"]) == (30, 24, 10.0, 20,
                                                                                                   N_TRAIN)


def test_sequential_requests_take_their_epochs_each(tmp_path, session_checkpoints, capsys):
    path = write(tmp_path, pnsgd_config(tmp_path, session_checkpoints,
                                        **{"unlearning.pnsgd": {"epsilon_target": 0.1, "requests": [2, 2]}}))
    plan = dry_run(path, capsys)
    epochs = [r["epochs"] for r in plan["requests"]]
    assert plan["noisy_steps"] == 30 * sum(epochs)
    assert run_main("--config", path, "--quiet") == 0
    _, rows, summary = read_rows(tmp_path)
    requests = [r for r in rows if "request" in r]
    assert [(r["request"], r["request_steps"], r["state_step"]) for r in requests] == [
        (1, 30 * epochs[0], 30 * epochs[0]), (2, 30 * epochs[1], 30 * sum(epochs))]
    assert len([r for r in rows if r.get("sigma_t", 0) > 0]) == summary["noisy_steps"] == 30 * sum(epochs)


def test_the_deleted_examples_leave_their_batches_and_every_step_stays_in_the_ball(tmp_path):
    from src.data.datamodule import get_datamodule
    from src.runner import attach_run
    from src.training.trainer import build_model

    raw = pnsgd_config(tmp_path, tmp_path, **{"unlearning.pnsgd": {"epsilon_target": 0.1, "requests": [1, 3]},
                                              "training.pnsgd": {"sigma": 0.05, "projection_radius": 0.5}})
    config, plan = validate_config(raw), plan_of(raw)
    data = get_datamodule(config, "cpu")
    algorithm = attach_run(plan, torch.device("cpu"), {"pnsgd": plan.algorithm.chain().record()}, data=data)
    model = build_model(config, data.input_shape, "cpu")
    algorithm.prepare(model, lambda row: None)
    retained = len(data.retain)
    first, second = (torch.cat(b) for b in algorithm._batches)
    assert sorted(first.tolist()) == list(range(retained)) + [retained + 1, retained + 2, retained + 3]
    assert sorted(second.tolist()) == list(range(retained))
    with torch.no_grad():
        model.theta.fill_(3.0)
    result = algorithm.noisy_step(model, data.retain.x, data.retain.y, 0)
    assert result.count == len(algorithm._batches[0][0])
    assert torch.linalg.vector_norm(model.theta).item() <= 0.5


def test_a_langevin_checkpoint_is_refused(tmp_path, session_checkpoints, capsys):
    lv = write(tmp_path, langevin_config(tmp_path, session_checkpoints), "lv")
    lv_plan = dry_run(lv, capsys)
    assert run_main("--config", lv, "--pretrain-only") == 0
    path = write(tmp_path, pnsgd_config(tmp_path, session_checkpoints,
                                        **{"training.pretrained": lv_plan["pretrained_path"]}))
    capsys.readouterr()
    assert run_main("--config", path) == 2
    assert "was not trained by projected noisy SGD" in capsys.readouterr().err


def test_a_non_convex_model_is_refused_with_the_reason(tmp_path):
    message = refused(pnsgd_config(tmp_path, tmp_path, **{"model.name": "tiny_net", "dataset.name": "mnist_5k",
                                                          "model.n_classes": 10}))
    assert "training.algorithm=pnsgd certifies only strongly convex objectives" in message
    assert "Model 'tiny_net' is non-convex" in message and "W-infinity distance" in message


def test_an_unprojected_chain_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="projection_radius"):
        validate_config(pnsgd_config(tmp_path, tmp_path, **{"training.pnsgd": {"sigma": 0.05}}))


@pytest.mark.parametrize("overrides, expected", [
    ({"training.weight_decay": 0.0, "unlearning.weight_decay": 0.0}, "training.weight_decay: 0.0"),
    ({"training.max_lr": 3.4, "unlearning.max_lr": 3.4}, "training.max_lr: 3.4 is above 1/L = 3.3333333"),
    ({"training.momentum": 0.9}, "training.momentum: 0.9"),
    ({"unlearning.max_lr": 3.0}, "unlearning.max_lr: 3.0 differs from training.max_lr 3.3"),
    ({"training.pnsgd": {"sigma": 0.05, "projection_radius": 10.0, "gradient_bound": 0.5}},
     "training.pnsgd.gradient_bound: 0.5 is below"),
    ({"training.algorithm": "langevin", "training.pnsgd": None, "training.langevin": {"sigma": 0.05}},
     "training.algorithm: 'langevin' is not allowed with unlearning.algorithm=pnsgd"),
    ({"unlearning.epochs": 1}, "unlearning.epochs: unlearning.algorithm=pnsgd needs 2 epochs"),
    ({"dataset.name": "mnist_5k", "model.n_classes": 10}, "dataset.name: 'mnist_5k' is not allowed"),
    ({"compat.reuse_noise": True}, "compat.reuse_noise: true is not allowed"),
])
def test_refusals_name_the_key_and_the_value(tmp_path, overrides, expected):
    assert expected in refused(pnsgd_config(tmp_path, tmp_path, **overrides))


def test_the_pnsgd_section_is_refused_for_other_training(tmp_path):
    data = langevin_config(tmp_path, tmp_path, **{"training.pnsgd": {"sigma": 0.05, "projection_radius": 1.0}})
    assert "training.pnsgd: given but training.algorithm is 'langevin'" in refused(data)
    training = validate_config(langevin_config(tmp_path, tmp_path)).to_dict()["training"]
    assert "pnsgd" not in training  # an existing config's run id does not move


@pytest.mark.parametrize("method, overrides, expected", [
    # compat.langevin_clipping changes the Langevin chain only: under any other training nothing reads it
    ("pnsgd", {"compat.langevin_clipping": "upstream"},
     "compat.langevin_clipping: 'upstream' changes the chain of training.algorithm: langevin, but "
     "training.algorithm is 'pnsgd'"),
    ("sgd", {"compat.langevin_clipping": "upstream"},
     "compat.langevin_clipping: 'upstream' changes the chain of training.algorithm: langevin, but "
     "training.algorithm is 'sgd'"),
    ("sgd", {"training.pnsgd": {"sigma": 0.05, "projection_radius": 1.0}},
     "training.pnsgd: given but training.algorithm is 'sgd'; set training.algorithm: pnsgd to train by projected "
     "noisy SGD"),
    ("pnsgd", {"training.langevin": {"sigma": 0.05}},
     "training.langevin: given but training.algorithm is 'pnsgd'; set training.algorithm: langevin"),
])
def test_a_training_algorithm_refuses_the_keys_of_another(tmp_path, method, overrides, expected):
    """Each training algorithm's check (looked up by training.method, as the runner does)
    refuses another algorithm's section or compat switch rather than silently ignoring it."""
    from src.registry import TRAINING_ALGORITHMS

    base = {"training.algorithm": method}
    if method == "sgd":
        base.update({"training.langevin": None, "training.pnsgd": None})
    config = validate_config(pnsgd_config(tmp_path, tmp_path, **{**base, **overrides}))
    with pytest.raises(ConfigError) as refusal:
        TRAINING_ALGORITHMS.get(config.training.method).check_config(config)
    assert expected in str(refusal.value)


def test_the_pretrained_cache_keys_a_pnsgd_chain_on_its_forget_set(tmp_path):
    """Its batches are cut retain-then-forget, so a chain trained for one forget set is not
    the chain of another: the cache must not hand it over (the accountant's start would not
    hold). Full-batch Langevin, whose gradient sums over the whole train split, keeps one key."""
    from src.config import pretrained_key

    def key(data):
        return pretrained_key(validate_config(data))

    pnsgd = pnsgd_config(tmp_path, tmp_path)
    assert key(pnsgd) != key(pnsgd_config(tmp_path, tmp_path, **{"dataset.forget_split": 0.012}))
    assert key(pnsgd) != key(pnsgd_config(tmp_path, tmp_path, **{"dataset.forget.strategy": "memorization"}))
    langevin = langevin_config(tmp_path, tmp_path)
    assert key(langevin) == key(langevin_config(tmp_path, tmp_path, **{"dataset.forget_split": 0.012}))

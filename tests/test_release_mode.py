"""What a certificate covers. Release mode (secure_rng: true): noise from OS entropy that no
seed replays, nothing measured before the certificate in the logs or on the console, and
`releasable: true`. Research mode (default): the certificate says it holds only while the
seeds and the logs stay private. And every random stream comes from its own purpose."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.config import load_config
from src.data.batches import make_generator
from src.entropy import OsRandomness, SeededRandomness, os_gaussian, os_uniform
from src.runner import attach_run, make_plan, resolve_device, run
from src.seeds import derive_seed
from src.training.trainer import Console, build_model
from tests.conftest import QUICKSTART


def rows_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_os_entropy_gives_standard_normals_and_open_unit_uniforms():
    u = os_uniform(200_000)
    assert u.min() > 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    z = os_gaussian(200_001)
    assert z.shape == (200_001,) and abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.015
    assert abs(np.mean(z**4) - 3) < 0.06  # Gaussian kurtosis, not just the first two moments
    assert not np.array_equal(os_gaussian(10), os_gaussian(10))


def _noise_after_prepare(overrides):
    config = load_config(QUICKSTART, overrides)
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"))
    model = build_model(config, plan.input_shape, "cpu")
    x, y = torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    algorithm.prepare(model, lambda row: None)
    algorithm.noisy_step(model, x, y, 0)
    return algorithm, model.theta.detach().clone()


def test_release_noise_is_not_a_function_of_the_seed():
    research_a, theta_a = _noise_after_prepare([])
    _, theta_b = _noise_after_prepare([])
    assert isinstance(research_a.context.noise.randomness, SeededRandomness) and torch.equal(theta_a, theta_b)
    release_a, theta_c = _noise_after_prepare(["secure_rng=true"])
    _, theta_d = _noise_after_prepare(["secure_rng=true"])
    assert isinstance(release_a.context.noise.randomness, OsRandomness)
    assert not torch.equal(theta_c, theta_d)  # same config, same seed: other noise
    assert not torch.equal(theta_c, theta_a)


@pytest.fixture
def tiny(make_config, tmp_path):
    def make(name, *overrides):
        path, _ = make_config(name, {"training.pretrained": False, "unlearning.fine_grained_validation": True})
        return load_config(path, list(overrides))

    return make


def test_release_mode_logs_and_prints_nothing_before_the_certificate(tiny, tmp_path, capsys):
    config = tiny("release", "secure_rng=true")
    plan = make_plan(config)
    assert plan.as_dict()["releasable"] is True
    summary = run(config, None, resolve_device("cpu"), Console())
    out = capsys.readouterr().out
    assert summary["releasable"] is True and "operating system" in summary["certificate_scope"]
    assert summary["certificate_valid"] is True and plan.privacy.noisy_steps > 0
    run_dir = tmp_path / "logs" / plan.run_id
    rows = rows_of(run_dir)
    keys = set().union(*rows)
    # no metric of the pretrained model, of the setup, or of pretraining
    assert not {k for k in keys if k.startswith(("Val (Post Unlearning Setup)", "Val (Train)", "train_"))}
    # nothing measured on data before the certificate row
    first = next(i for i, row in enumerate(rows) if "certified_epsilon" in row)
    measured = {k for row in rows[:first] for k in row if k.endswith(("loss", "accuracy"))}
    assert measured == set()
    # after it, the released model and its fine-tuning are measured as usual
    assert "Val (Post Noise Addition)_accuracy" in keys and "Test_accuracy" in keys
    assert not list((run_dir / "ckpt").glob("*.pt"))  # the pretrained model is not in the run's output
    assert "pretrain epoch" not in out and "val acc" in out
    assert "certificate scope: holds for the released model and this run's logs" in out


def test_research_mode_says_the_certificate_needs_the_seed_and_logs_private(tiny, tmp_path, capsys):
    config = tiny("research")
    summary = run(config, None, resolve_device("cpu"), Console())
    out = capsys.readouterr().out
    assert summary["releasable"] is False
    assert "global_seed" in summary["certificate_scope"] and "logs" in summary["certificate_scope"]
    assert "certificate scope: holds for the released model only while the config's seeds" in out
    rows = rows_of(tmp_path / "logs" / make_plan(config).run_id)
    assert any("Val (Post Unlearning Setup)_accuracy" in row for row in rows)  # research logs everything


def test_each_stream_comes_from_its_purpose():
    """dataset.seed = training.dp_sgd.seed = 142 used to give the split and DP-SGD's noise one
    stream (both torch.Generator().manual_seed(142))."""
    from src.data.base_datamodule import Split
    from src.models.model import ModelFactory
    from src.privacy.dpsgd_calibration import calibrate_dp_sgd
    from src.training.dp_sgd import DPSGD
    from src.training.flat_model import FlatModel

    calibration = calibrate_dp_sgd(target_epsilon=50, target_delta=1e-5, l2_norm_clip=0.5, batch_size=128, epochs=2,
                                   train_size=1000, forget_size=9, group_rule="tight", sampling="poisson")
    model = FlatModel(ModelFactory.create_model("three_layer_net", 10, (512,), seed=0))
    dp = DPSGD(calibration, model, Split(torch.zeros(1000, 512), torch.zeros(1000, dtype=torch.long)), 128, seed=142)
    noise = dp.noise.normal(100, "cpu")
    assert torch.equal(noise, torch.randn(100, generator=make_generator(derive_seed(142, "dp-sgd-noise"), "cpu")))
    assert not torch.equal(noise, torch.randn(100, generator=torch.Generator().manual_seed(142)))
    purposes = ["split", "dp-sgd-noise", "dp-sgd-sampling", "init", "unlearning-noise", "unlearning-data",
                "pretrain-data", "eval-augmentation", "retrain-init"]
    assert len({derive_seed(142, p) for p in purposes}) == len(purposes)

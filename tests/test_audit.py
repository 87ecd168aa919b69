"""The empirical audit (src/audit/) end to end on the bundled MNIST digits: the two worlds,
the scores, the CLI's outputs, and an audit that fails when the noise is weakened."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from src.audit.__main__ import main as audit_main
from src.audit.scores import chain_scores, score_names
from src.audit.worlds import adversarial_starts
from src.config import load_config, pretrained_key, validate_config
from src.data.datamodule import get_datamodule
from src.errors import ConfigError
from src.privacy.pabi import init_ball_radius
from src.runner import ensure_pretrained
from src.training.checkpoints import load_checkpoint
from src.training.trainer import Console, build_model, pretrain
from tests.conftest import REPO

OP = {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None,
      "unlearning.dp-baseline": {"epsilon_target": 1}}


def run_audit(capsys, path, out, *args):
    code = audit_main(["--config", str(path), "--out", str(out), "--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def read_audit(out: Path) -> dict:
    (directory,) = [p for p in out.iterdir() if p.is_dir()]
    assert (directory / "audit.png").stat().st_size > 10_000
    return json.loads((directory / "audit.json").read_text())


def test_weakened_noise_makes_the_audit_of_a_real_config_exceed_its_certificate(make_config, tmp_path, capsys):
    """Gradient Clipping certified at epsilon 1: with its own noise the lower bound stays
    below 1; with every sigma multiplied by 0.01 it rises above it (the audit can fail)."""
    path, _ = make_config("weakened")
    code, lines, _ = run_audit(capsys, path, tmp_path / "real", "--chains", 64, "--start", "adversarial")
    assert code == 0
    real = read_audit(tmp_path / "real")
    assert real["certified_epsilon"] == pytest.approx(1.0) and real["noisy_steps"] > 0
    assert real["lower_bound"] <= real["certified_epsilon"] and not real["exceeds_certificate"]
    down = lambda x: f"{math.floor(x * 1000) / 1000:.3f}"  # noqa: E731  (printed rounded down)
    assert lines == [f"certified epsilon 1.000, empirical lower bound {down(real['lower_bound'])} (95%), "
                     f"ceiling {down(real['ceiling'])}; Gaussian-DP estimate "
                     f"{real['gaussian_estimate']['epsilon']:.3f} (assumes Gaussian scores)"]

    code, lines, err = run_audit(capsys, path, tmp_path / "weak", "--chains", 64, "--start", "adversarial",
                                 "--noise-scale", 0.01)
    assert code == 0 and "EXCEEDED" not in err  # weakened on purpose: not a certificate bug
    weak = read_audit(tmp_path / "weak")
    assert weak["noise_scale"] == 0.01 and weak["exceeds_certificate"]
    assert weak["lower_bound"] > 1.0 and weak["lower_bound"] <= weak["ceiling"]
    assert weak["chains_per_world"] == 64 and weak["lower_bound_details"]["evaluation_chains"] == 32


def test_the_audit_json_says_what_was_audited(make_config, tmp_path, capsys):
    path, _ = make_config("described", OP)
    code, _, _ = run_audit(capsys, path, tmp_path, "--chains", 16)
    assert code == 0
    result = read_audit(tmp_path)
    assert result["algorithm"] == "dp-baseline" and result["start"] == "pretrained"
    assert result["noisy_steps"] == 0  # output perturbation: the output is the noisy initial point
    assert "-retain-" in result["starts"]["world_B"] and "-retain-" not in result["starts"]["world_A"]
    assert result["delta"] == pytest.approx(1e-5) and result["confidence"] == 0.95
    for key in ("projection", "forget_loss", "mean_margin", "margin"):
        assert key in result["scores"]
    assert result["lower_bound_details"]["selection_chains"] == 8
    assert set(result["seconds"]) >= {"chains_A", "chains_B", "scores", "bound"}


def test_world_b_is_the_same_recipe_trained_on_the_retain_set(make_config, session_checkpoints):
    path, _ = make_config("worldb")
    config = load_config(path)
    assert pretrained_key(config, without_forget=True) != pretrained_key(config)
    data = get_datamodule(config, "cpu")
    cached = ensure_pretrained(config, "cpu", Console(quiet=True), data, without_forget=True)
    state, _ = load_checkpoint(cached)
    model = build_model(config, data.input_shape, "cpu")
    model.load_state_dict(state)
    expected = build_model(config, data.input_shape, "cpu")
    retain_only = dataclasses.replace(data, train=data.retain)
    pretrain(config, retain_only, expected, lambda row: None, Console(quiet=True))
    assert torch.equal(model.theta, expected.theta)
    full, _ = load_checkpoint(ensure_pretrained(config, "cpu", Console(quiet=True), data))
    assert not torch.equal(torch.cat([v.reshape(-1) for v in full.values()]), model.theta.detach())


@pytest.mark.parametrize("clip_type", ["clip", "clamp"])
def test_adversarial_starts_are_two_radii_apart_and_fixed_by_the_initial_projection(make_config, clip_type):
    from src.unlearning.initial_projection import initial_projection_

    path, _ = make_config(f"adv-{clip_type}", {"unlearning.init_model_clip_type": clip_type,
                                               "unlearning.init_model_clip": 0.01})
    config = load_config(path)
    theta = torch.randn(3985, generator=torch.Generator().manual_seed(0))
    a, b, info = adversarial_starts(config, theta)
    radius = init_ball_radius(0.01, clip_type, 3985)
    assert float((a - b).norm()) == pytest.approx(2 * radius, rel=1e-5)
    assert info["distance"] == pytest.approx(2 * radius, rel=1e-5)
    for point in (a, b):
        moved = point.clone()
        initial_projection_(moved, config, None, lambda row: None, sigma0=0.0)
        assert torch.allclose(moved, point, rtol=1e-6, atol=0)


def test_scores_are_the_projection_the_forget_loss_and_the_logit_scaled_confidence(make_config):
    path, _ = make_config("scores")
    config = load_config(path)
    data = get_datamodule(config, "cpu")
    network = build_model(config, data.input_shape, "cpu")
    generator = torch.Generator().manual_seed(1)
    outputs = 0.1 * torch.randn(5, network.num_parameters, generator=generator)
    a, b = outputs[0] + 1.0, outputs[0] - 1.0
    scores = chain_scores(network, outputs, a, b, data.forget, chunk=2)
    assert scores.shape == (5, 3 + len(data.forget))
    assert len(score_names(data.indices.forget)) == scores.shape[1]
    for i in range(5):
        unit = (a - b) / (a - b).norm()
        assert scores[i, 0] == pytest.approx(float((outputs[i] - (a + b) / 2) @ unit), abs=1e-5)
        logits = network(data.forget.x, outputs[i]).double()
        assert scores[i, 1] == pytest.approx(float(F.cross_entropy(logits, data.forget.y)), rel=1e-6)
        p = torch.softmax(logits, 1).gather(1, data.forget.y[:, None]).squeeze(1)
        assert np.allclose(scores[i, 3:], (p.log() - (1 - p).log()).numpy(), rtol=1e-6, atol=1e-6)
        assert scores[i, 2] == pytest.approx(float((p.log() - (1 - p).log()).mean()), rel=1e-6)


def test_noise_scale_is_audit_only(make_config, tmp_path):
    import experiment

    with pytest.raises(SystemExit):
        experiment.parse_args(["--noise-scale", "0.1"])
    _, data = make_config("noise-key")
    for section in (data, data["unlearning"], data.setdefault("compat", {})):
        section["noise_scale"] = 0.1
        with pytest.raises(ConfigError, match="noise_scale"):
            validate_config(data)
        del section["noise_scale"]
    # nothing outside the audit package builds the weakened noise
    users = [p for p in (REPO / "src").rglob("*.py") if "WeakenedNoise" in p.read_text() or
             "noise_scale" in p.read_text()]
    assert users and all(p.parent.name == "audit" for p in users)


def test_refusals_are_one_line_errors(make_config, tmp_path, capsys):
    path, _ = make_config("refused")
    for args, message in ((["--chains", "2"], "--chains"), (["--noise-scale", "-1"], "--noise-scale"),
                          (["--confidence", "1.5"], "--confidence")):
        code, _, err = run_audit(capsys, path, tmp_path, *args)
        assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err
    dp_path, _ = make_config("refused-dpsgd", {"unlearning.algorithm": "dp-sgd", "unlearning.iteration": None,
                                               "training.dp_sgd": {"l2_norm_clip": 1.0, "target_epsilon": 1.0,
                                                                   "target_delta": 1e-5}})
    code, _, err = run_audit(capsys, dp_path, tmp_path, "--chains", 12)
    assert code == 2 and "dp-sgd" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*/audit.json"))

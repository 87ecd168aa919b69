"""A diverged run is a failure: non-finite losses or weights end the run with a clear message
and a non-zero exit, nothing is cached or recorded as finished, and the JSON we write stays
JSON (no bare NaN). End to end on the bundled MNIST digits with tiny budgets."""

from __future__ import annotations

import json
import math

import pytest
import torch

from src.errors import DivergedError
from src.tracking import RunLogger, dumps
from tests.conftest import run_main


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every non-Python JSON reader does."""
    def refuse(constant):
        raise ValueError(f"bare {constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def nothing_recorded(tmp_path):
    logs = tmp_path / "logs"
    return not logs.exists() or not any(logs.iterdir())


def test_a_huge_training_learning_rate_fails_the_run_and_caches_nothing(make_config, tmp_path, capsys):
    cache = tmp_path / "cache"
    path, _ = make_config("lr", {"training.max_lr": 1e30, "training.epochs": 1, "checkpoints_dir": str(cache)})
    assert run_main("--config", path, "--quiet") == 2
    err = capsys.readouterr().err
    assert "diverged in pretraining epoch 1" in err and "training.max_lr" in err
    assert nothing_recorded(tmp_path)
    # pretrained: auto: no model and no half entry in the cache, so no other config reuses it
    assert not list(cache.glob("pretrained/*/model.pt")) and not [p for p in cache.glob("pretrained/*") if p.is_dir()]


def test_a_huge_fine_tuning_learning_rate_fails_the_run(make_config, tmp_path, capsys):
    path, _ = make_config("post", {"post_unlearning.max_lr": 1e4, "unlearning.epochs": 3})
    assert run_main("--config", path, "--quiet") == 2
    err = capsys.readouterr().err
    assert "the run diverged" in err and "post_unlearning.max_lr (now 10000.0)" in err
    assert nothing_recorded(tmp_path)


def test_an_overflowing_init_sigma_fails_at_the_initial_noise(make_config, tmp_path, capsys):
    # A sigma float32 cannot hold is refused by the plan, before anything runs ...
    path, _ = make_config("sigma", {"unlearning.init_sigma": 1e300})
    assert run_main("--config", path, "--quiet") == 2
    assert "unlearning.init_sigma: 1e+300 gives no finite certificate" in capsys.readouterr().err
    assert nothing_recorded(tmp_path)
    # ... and so is one whose noise would overflow the weights under Gradient Clipping, whose
    # certificate now carries the float32 rounding margin of iterates that large ...
    path, _ = make_config("sigma-gc", {"unlearning.init_sigma": 3e38})
    assert run_main("--config", path, "--quiet") == 2
    assert "unlearning.init_sigma: 3e+38 gives no finite certificate (the float32 rounding margin" in \
        capsys.readouterr().err
    assert nothing_recorded(tmp_path)
    # ... while Model Clipping with noise after the projection (no margin: the noise's input is the
    # projected model) plans it, and the weights overflow once multiplied by the noise
    model_clipping = {"unlearning.algorithm": "contractive_coefficients", "unlearning.init_model_clip": 7,
                      "unlearning.weight_decay": 500, "unlearning.iteration": None,
                      "unlearning.contractive_coefficients": {"epsilon_target": 1, "sigma": 0.01, "model_clip": 0.01,
                                                              "noise_addition_after_projection": True}}
    path, _ = make_config("sigma-f32", {**model_clipping, "unlearning.init_sigma": 3e38})
    assert run_main("--config", path, "--quiet") == 2
    assert "unlearning.init_sigma: 3e+38 overflows the weights" in capsys.readouterr().err
    assert nothing_recorded(tmp_path)


def nan_checkpoint(path):
    from src.models.model import ModelFactory

    state = {k: torch.full_like(v, math.nan) for k, v in ModelFactory.create_model("tiny_net", 10, (28, 28, 1))
             .state_dict().items()}
    torch.save({"state_dict": state, "meta": {}}, path)


def test_a_checkpoint_holding_nan_weights_is_refused_before_anything_is_written(make_config, tmp_path, capsys):
    nan_checkpoint(tmp_path / "nan.pt")
    path, _ = make_config("nanckpt", {"training.pretrained": str(tmp_path / "nan.pt")})
    assert run_main("--config", path, "--quiet") == 2
    err = capsys.readouterr().err
    assert "holds a diverged model" in err and "NaN or infinite" in err
    assert not (tmp_path / "logs").exists()


def test_a_nan_model_in_the_pretrained_cache_is_refused_with_its_remedy(make_config, tmp_path, capsys):
    from src.config import load_config, pretrained_key

    cache = tmp_path / "cache"
    path, _ = make_config("nancache", {"checkpoints_dir": str(cache)})
    entry = cache / "pretrained" / pretrained_key(load_config(path))
    entry.mkdir(parents=True)
    nan_checkpoint(entry / "model.pt")  # e.g. cached by a version without these checks
    assert run_main("--config", path, "--quiet") == 2
    assert f"delete {entry} to train it again" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_the_initial_projection_refuses_non_finite_weights():
    from src.unlearning.initial_projection import initial_projection_
    from tests.conftest import QUICKSTART
    from src.config import load_config

    config = load_config(QUICKSTART)
    for bad in (math.nan, math.inf):
        theta = torch.ones(10)
        theta[3] = bad
        with pytest.raises(DivergedError, match="1 of 10 weights NaN or infinite"):
            initial_projection_(theta, config, None, lambda row: None)


def test_metrics_and_summary_are_strict_json(tmp_path):
    logger = RunLogger(tmp_path, {"a": 1}, "rid")
    logger.log({"epsilon": math.inf, "loss": math.nan, "delta": -math.inf, "ok": 1.5})
    summary = logger.finish({"certified_epsilon": math.inf})
    row = strict_json((tmp_path / "metrics.jsonl").read_text())
    assert row == {"epsilon": "Infinity", "loss": "NaN", "delta": "-Infinity", "ok": 1.5}
    assert strict_json((tmp_path / "summary.json").read_text())["certified_epsilon"] == "Infinity"
    assert summary["finished"] is True
    assert strict_json(dumps({"x": [math.nan, 2.0]})) == {"x": ["NaN", 2.0]}

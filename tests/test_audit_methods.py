"""Every method against its own reference (issue 23, item 1): an empirical method is audited
as N single runs from each world's pretrained model and a leaking one shows a lower bound
above 0. Langevin and D2D, whose certificates compare chains trained from their own initial
distribution, are audited between such chains: tests/test_audit_convex.py."""

from __future__ import annotations

import json

import pytest

from src.audit.__main__ import main as audit_main

FINE_TUNE_ONE_EPOCH = {"unlearning.algorithm": "ft", "unlearning.iteration": None, "unlearning.epochs": 1,
                       "unlearning.max_lr": 0.01, "unlearning.weight_decay": 0.0005}


def test_weakening_noise_a_method_does_not_draw_is_refused(make_config, tmp_path, capsys):
    path, _ = make_config("ft-weak", FINE_TUNE_ONE_EPOCH)
    assert audit_main(["--config", str(path), "--chains", "12", "--noise-scale", "0.5", "--out",
                       str(tmp_path / "weak"), "--quiet"]) == 2
    assert "draws no noise" in capsys.readouterr().err
    assert not (tmp_path / "weak").exists()


SMALL_FORGET = {"dataset.forget_split": 0.02}  # 72 forget examples: the challenge's estimator stays quick
RETRAIN = {"unlearning.algorithm": "retrain", "unlearning.iteration": None, "unlearning.epochs": 3,
           # the pretraining recipe of the quick start for the retrained model's whole budget
           "post_unlearning": {"optim": "SGD", "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle",
                               "max_lr": 0.06}}


def closeness_of(make_config, tmp_path, capsys, name, overrides) -> tuple[dict, str]:
    """(audit.json, the printed lines) of one --closeness audit."""
    path, _ = make_config(name, {**SMALL_FORGET, **overrides})
    out = tmp_path / f"out-{name}"
    code = audit_main(["--config", str(path), "--chains", "16", "--closeness", "--out", str(out), "--quiet"])
    lines = capsys.readouterr().out
    assert code == 0 and "closeness to retrain: forgetting quality" in lines
    (directory,) = list(out.iterdir())
    return json.loads((directory / "audit.json").read_text()), lines


def test_retrain_is_at_the_optimum_of_closeness_to_retrain_and_fine_tuning_is_not(make_config, tmp_path, capsys):
    """Retraining from scratch with the pretraining recipe is what the retrained models are:
    its forgetting quality is what two sets of retrained models score against each other
    (the estimator's optimum at this N; below 1 by chance, the challenge has no confidence
    intervals) and no valid bound separates it from them. One epoch of fine-tuning from the
    model trained on all the data stays far from them, and a valid bound says so."""
    retrain = closeness_of(make_config, tmp_path, capsys, "rt-close", RETRAIN)[0]["closeness_to_retrain"]
    assert retrain["models_per_side"] == 16 and len(retrain["example_epsilons"]) == 72
    assert retrain["forgetting_quality_against_half"] == pytest.approx(retrain["null_forgetting_quality"], abs=0.06)
    assert retrain["lower_bound"] == 0.0
    # the challenge's final score: retrain keeps the retrained models' utility (ratios of about 1)
    acc = retrain["accuracy"]
    for split in ("retain", "test"):
        assert acc["unlearned"][split] == pytest.approx(acc["retrained"][split], abs=0.02)
    assert retrain["challenge_score"] == pytest.approx(retrain["forgetting_quality"], abs=0.03)
    result, lines = closeness_of(make_config, tmp_path, capsys, "ft-close", FINE_TUNE_ONE_EPOCH)
    # the audit of the same runs against its own reference: one epoch of fine-tuning from
    # world A's model and from world B's stay apart, so even 16 runs per world bound
    # epsilon above 0 (no certificate to exceed)
    assert result["algorithm"] == "ft" and result["certified_epsilon"] is None and result["noisy_steps"] == 0
    assert result["lower_bound"] > 0 and result["lower_bound"] <= result["ceiling"]
    assert lines.startswith("certified epsilon none, empirical lower bound")
    tuned = result["closeness_to_retrain"]
    assert tuned["forgetting_quality_against_half"] < retrain["forgetting_quality_against_half"] - 0.05
    assert tuned["forgetting_quality"] < retrain["forgetting_quality"]
    assert tuned["lower_bound"] > 0 and tuned["median_example_epsilon"] > retrain["median_example_epsilon"]
    assert tuned["challenge_score"] < retrain["challenge_score"]


def test_the_challenge_estimator_by_hand():
    import math

    import numpy as np

    from src.audit.closeness import example_epsilon, example_epsilons, forgetting_quality

    # N = 64 models per side: buckets of 0.5 up to ceil(ln 63) = 5, worth 1, 1/2, ..., 1/512
    assert forgetting_quality([0.0, 0.49, 0.5, 4.99, 5.0, 50.0], 64) == pytest.approx((1 + 1 + 0.5 + 2 ** -9) / 6)
    # perfectly separated sides: both error rates 0 at some threshold, epsilon infinite, capped at 50
    assert example_epsilon(np.linspace(10, 11, 20), np.linspace(0, 1, 20)) == 50.0
    # a side whose range is under 1% of the other's: 50 whatever the rates
    assert example_epsilon(np.linspace(0, 0.001, 20), np.linspace(-1, 1, 20)) == 50.0
    # overlapping sides, positive 5..14 and negative 0..9 (10 models each): a finite epsilon
    pos, neg = np.arange(10.0) + 5, np.arange(10.0)
    eps = example_epsilon(pos, neg)
    assert 0 < eps < 50
    # rule t = 9 (pos >= 9: 6 of 10; neg >= 9: 1 of 10): ln((1 - 1e-5 - 0.1) / 0.4)
    assert eps >= math.log((1 - 1e-5 - 0.1) / 0.4) - 1e-12
    # sides chosen by the larger median: swapping the roles gives the same epsilons
    rng = np.random.default_rng(0)
    u, r = rng.normal(0.5, 1, (32, 5)), rng.normal(0, 1, (32, 5))
    assert np.allclose(example_epsilons(u, r), example_epsilons(r, u))


def test_with_the_training_randomness_each_chain_starts_from_its_own_trained_models(make_config, tmp_path, capsys):
    """--start trained: the definition's distribution, each chain from its own A(D) and A(D_r).
    Gradient Clipping (certified 1) stays below its certificate; one epoch of fine-tuning still
    leaks."""
    results = {}
    for name, overrides in (("gc-trained", {}), ("ft-trained", FINE_TUNE_ONE_EPOCH)):
        path, _ = make_config(name, {**SMALL_FORGET, **overrides})
        out = tmp_path / f"out-{name}"
        code = audit_main(["--config", str(path), "--chains", "16", "--start", "trained", "--out", str(out),
                           "--quiet"])
        capsys.readouterr()
        assert code == 0
        (directory,) = list(out.iterdir())
        assert directory.name.endswith("-n16-conf0.95-trained")
        results[name] = json.loads((directory / "audit.json").read_text())
    gc, ft = results["gc-trained"], results["ft-trained"]
    assert "one per chain" in gc["starts"]["world_A"] and "retain set" in gc["starts"]["world_B"]
    assert len(gc["chain_scores"]["A"]["projection"]) == 16
    assert gc["certified_epsilon"] == pytest.approx(1.0) and gc["lower_bound"] <= gc["certified_epsilon"]
    assert ft["lower_bound"] > 0

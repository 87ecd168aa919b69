"""Every method against its own reference (issue 23, item 1): an empirical method is audited
as N single runs from each world's pretrained model and a leaking one shows a lower bound
above 0; Langevin and D2D, whose certificates compare chains trained from their own initial
distribution, are refused before anything is trained."""

from __future__ import annotations

import json

import pytest

from src.audit.__main__ import main as audit_main
from tests.conftest import REPO

FINE_TUNE_ONE_EPOCH = {"unlearning.algorithm": "ft", "unlearning.iteration": None, "unlearning.epochs": 1,
                       "unlearning.max_lr": 0.01, "unlearning.weight_decay": 0.0005}


def test_plain_fine_tuning_for_one_epoch_leaks(make_config, tmp_path, capsys):
    """One epoch of fine-tuning on the retain set from the model trained on all the data
    (world A) and from the model trained without the forget set (world B): the outputs stay
    apart, so even 16 runs per world bound epsilon above 0 (no certificate to exceed)."""
    path, _ = make_config("ft-leaks", FINE_TUNE_ONE_EPOCH)
    code = audit_main(["--config", str(path), "--chains", "16", "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    (directory,) = list((tmp_path / "out").iterdir())
    result = json.loads((directory / "audit.json").read_text())
    assert result["algorithm"] == "ft" and result["certified_epsilon"] is None and result["noisy_steps"] == 0
    assert result["lower_bound"] > 0 and result["lower_bound"] <= result["ceiling"]
    assert out.startswith("certified epsilon none, empirical lower bound")
    # weakening noise it does not draw is refused
    assert audit_main(["--config", str(path), "--chains", "8", "--noise-scale", "0.5", "--out",
                       str(tmp_path / "weak"), "--quiet"]) == 2
    assert "draws no noise" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lmc-K_1-eps_0.5-g1.yaml", "d2d-I_1-eps_0.5-g0.yaml"])
def test_langevin_and_d2d_are_refused_before_anything_is_trained(name, tmp_path, capsys):
    config = REPO / "langevin_runs" / "mini-mnist5k" / "fig3a" / name
    checkpoints = tmp_path / "checkpoints"
    code = audit_main(["--config", str(config), "--chains", "8", "--out", str(tmp_path / "out"), "--quiet",
                       "--override", f"checkpoints_dir={checkpoints}"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("error: unlearning.algorithm:")
    assert "noise drawn in training" in captured.err and "checkpoint" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not checkpoints.exists() and not (tmp_path / "out").exists()

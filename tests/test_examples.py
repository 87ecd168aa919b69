"""examples/ end to end, as a user on a fresh clone runs it: the digits written to .npz by
the script, then the run_exp.py folder (Gradient Clipping with recomputed BatchNorm
statistics, fine-tuning, the user's own method), all offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def test_the_example_folder_runs_end_to_end(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("digits.npz"))
    env = {"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    script = subprocess.run([sys.executable, "examples/make_digits.py"], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=120)
    assert script.returncode == 0, script.stderr
    with np.load(tmp_path / "examples" / "digits.npz") as digits:
        assert digits["x_train"].shape == (1438, 8, 8, 1) and digits["x_test"].shape == (359, 8, 8, 1)
        assert digits["x_train"].max() == 1.0 and sorted(set(digits["y_train"].tolist())) == list(range(10))
    launch = subprocess.run([sys.executable, str(REPO / "run_exp.py"), "-n", "0", "-j", "2", "-e", "examples/runs"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert "4 ok" in launch.stdout  # one pretraining shared by the three runs
    summaries = {p.parent.name.rsplit("-", 1)[0]: json.loads(p.read_text())
                 for p in (tmp_path / "logs").glob("*/summary.json")}
    assert set(summaries) == {"digits-gradient-clipping", "digits-finetune", "digits-forget-margin"}
    certified = summaries["digits-gradient-clipping"]
    assert certified["certificate_valid"] and certified["certified_epsilon"] <= 1.0 + 1e-9
    assert certified["certified_delta"] == 1e-5 and certified["plan"]["num_parameters"] == 10026
    for name in ("digits-finetune", "digits-forget-margin"):  # empirical: no certificate
        assert summaries[name]["certified_epsilon"] is None and not summaries[name]["certificate_valid"]
    outside = summaries["digits-forget-margin"]
    assert any("outside method" in reason for reason in outside["plan"]["certificate_invalid_because"])
    for summary in summaries.values():  # every forgetting metric, on the user's model and data
        evaluation = summary["evaluation"]
        assert {"accuracy", "mia_efficacy", "mia_svc", "mia_threshold", "tow"} <= set(evaluation)
        assert summary["test_accuracy"] > 0.8  # chance is 0.1

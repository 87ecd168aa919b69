"""Intervals on every point of the miniature Figure 1 and of the request-stream tables, read
from small real ensembles (`seeds: 3`): each equals a Student-t 95% interval computed here,
independently, from the members' own values in metrics.jsonl / summary.json; the paired
difference to retrain pairs member i with retrain's member i (the same seeds); a stream's
members each deploy their own models."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from scipy import stats

from src.figures import request_stream
from src.figures.__main__ import main as figures_main
from src.training.checkpoints import load_checkpoint
from tests.conftest import run_main

FAST = {"training.epochs": 1, "evaluation": {"mia": {"svc": {"n_shadow": 100}}}}
RETRAIN = {"unlearning.algorithm": "retrain", "unlearning.iteration": None}


def t_interval(values):
    """Mean and Student-t 95% half-width, from scratch (scipy's t quantile, sd with ddof=1)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    return values.mean(), stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)


def run_folder(make_config, tmp_path, configs: dict) -> None:
    for name, overrides in configs.items():
        path, _ = make_config(name, {**FAST, **overrides, "seeds": 3}, directory=tmp_path / "folder")
        assert run_main("--config", path, "--quiet") == 0


def run_dir(logs, prefix):
    (found,) = [p for p in logs.iterdir() if p.name.startswith(prefix + "-") and (p / "summary.json").is_file()]
    return found


def best_so_far_curves(directory) -> dict:
    """member -> [best-so-far Val (Unlearn) accuracy at epochs 1, 2, ...], from metrics.jsonl."""
    by_member = defaultdict(lambda: defaultdict(list))
    for line in open(directory / "metrics.jsonl"):
        row = json.loads(line)
        epoch = row.get("unlearn_epoch")
        if "Val (Unlearn)_accuracy" in row and epoch is not None and epoch == int(epoch) and epoch >= 1:
            by_member[row["member"]][int(epoch)].append(row["Val (Unlearn)_accuracy"])
    curves = {}
    for member, epochs in by_member.items():
        best, curve = -math.inf, []
        for epoch in sorted(epochs):
            best = max(best, max(epochs[epoch]))
            curve.append(best)
        curves[member] = curve
    return curves


def test_figure1_points_carry_the_members_t_interval_and_the_paired_difference_to_retrain(
        make_config, tmp_path):
    run_folder(make_config, tmp_path, {"rt": {**RETRAIN, "unlearning.epochs": 2}, "gc": {"unlearning.epochs": 2}})
    logs = tmp_path / "logs"
    out = tmp_path / "figures"
    assert figures_main(["--figure", "1", "--logs", str(logs), "--folder", str(tmp_path / "folder"),
                         "--out", str(out), "--min-runs", "3"]) == 0
    rows = list(csv.DictReader(open(out / "figure1.csv")))
    gc, rt = best_so_far_curves(run_dir(logs, "gc")), best_so_far_curves(run_dir(logs, "rt"))
    assert sorted(gc) == sorted(rt) == [0, 1, 2]
    assert {(r["method"], r["budget_epoch"]) for r in rows} == {
        (m, e) for m in ("Retrain from scratch", "Gradient Clipping") for e in ("1", "2")}
    for row in rows:
        curves = gc if row["method"] == "Gradient Clipping" else rt
        epoch = int(row["budget_epoch"])
        values = [curves[m][epoch - 1] for m in range(3)]
        mean, half = t_interval(values)
        assert half > 0 and row["n_runs"] == "3" and row["interval"] == "t"
        assert float(row["mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(row["ci95"]) == pytest.approx(half, rel=1e-9)
        assert float(row["low"]) == pytest.approx(mean - half) and float(row["high"]) == pytest.approx(mean + half)
        if row["method"] == "Gradient Clipping":  # member i against retrain's member i
            diff_mean, diff_half = t_interval([gc[m][epoch - 1] - rt[m][epoch - 1] for m in range(3)])
            assert row["vs_retrain_pairs"] == "3"
            assert float(row["vs_retrain"]) == pytest.approx(diff_mean, abs=1e-12)
            assert float(row["vs_retrain_ci95"]) == pytest.approx(diff_half, rel=1e-9)
        else:
            assert row["vs_retrain"] == row["vs_retrain_pairs"] == ""
    # the reference notebook's bars on request: 1.96 population standard errors
    assert figures_main(["--figure", "1", "--logs", str(logs), "--folder", str(tmp_path / "folder"),
                         "--out", str(out), "--min-runs", "3", "--interval", "notebook"]) == 0
    for row in csv.DictReader(open(out / "figure1.csv")):
        curves = gc if row["method"] == "Gradient Clipping" else rt
        values = np.array([curves[m][int(row["budget_epoch"]) - 1] for m in range(3)])
        assert float(row["ci95"]) == pytest.approx(1.96 * values.std() / math.sqrt(3), rel=1e-9)
        assert row["interval"] == "notebook"


def test_stream_members_deploy_their_own_models_and_the_tables_read_them_as_seeds(make_config, tmp_path):
    stream = {"requests": {"num_requests": 2}}
    run_folder(make_config, tmp_path, {"rt1": {**RETRAIN, **stream, "unlearning.epochs": 1},
                                       "rt2": {**RETRAIN, **stream, "unlearning.epochs": 2},
                                       "gc1": {**stream, "unlearning.epochs": 1}})
    logs = tmp_path / "logs"
    gc = json.loads((run_dir(logs, "gc1") / "summary.json").read_text())
    rt = json.loads((run_dir(logs, "rt1") / "summary.json").read_text())
    # each member streams its own deployed models, from its own seed
    models = [load_checkpoint(run_dir(logs, "gc1") / f"member-{m}" / "deployed" / "request_2.pt")[0]
              for m in range(3)]
    tensors = [torch.cat([v.flatten().float() for v in state.values()]) for state in models]
    assert all(not torch.equal(tensors[i], tensors[j]) for i in range(3) for j in range(i + 1, 3))
    assert len({m["member_overrides"]["global_seed"] for m in gc["members"]}) == 3
    assert all(len(m["requests"]) == 2 for m in gc["members"])
    assert [m["member_overrides"] for m in gc["members"]] == [m["member_overrides"] for m in rt["members"]]

    out = tmp_path / "out"
    assert request_stream.main(["--logs", str(logs), "--folder", str(tmp_path / "folder"), "--out", str(out)]) == 0
    per_request = list(csv.DictReader(open(out / "request_stream.csv")))
    for row in (r for r in per_request if r["method"] == "Gradient Clipping"):
        values = [m["requests"][int(row["request"]) - 1]["test_accuracy"] for m in gc["members"]]
        mean, half = t_interval(values)
        assert row["n_runs"] == "3" and float(row["test_accuracy"]) == pytest.approx(mean)
        assert float(row["ci95"]) == pytest.approx(half, rel=1e-9)
        assert float(row["low"]) == pytest.approx(mean - half) and float(row["high"]) == pytest.approx(mean + half)
    (saving,) = list(csv.DictReader(open(out / "request_stream_savings.csv")))
    assert saving["method"] == "Gradient Clipping" and saving["n_runs"] == "3"
    stream_gc = [np.mean([r["test_accuracy"] for r in m["requests"]]) for m in gc["members"]]
    stream_rt = [np.mean([r["test_accuracy"] for r in m["requests"]]) for m in rt["members"]]
    final_gc = [m["requests"][-1]["test_accuracy"] for m in gc["members"]]
    final_rt = [m["requests"][-1]["test_accuracy"] for m in rt["members"]]
    for name, values in (("stream", stream_gc), ("final", final_gc)):
        mean, half = t_interval(values)
        assert float(saving[f"{name}_accuracy"]) == pytest.approx(mean)
        assert float(saving[f"{name}_accuracy_ci95"]) == pytest.approx(half, rel=1e-9)
        assert float(saving[f"{name}_accuracy_low"]) == pytest.approx(mean - half)
    # paired against retraining at the same budget per request (1 epoch), member by member
    assert saving["vs_retrain_pairs"] == "3"
    for name, mine, theirs in (("stream", stream_gc, stream_rt), ("final", final_gc, final_rt)):
        mean, half = t_interval(np.subtract(mine, theirs))
        assert float(saving[f"{name}_vs_retrain"]) == pytest.approx(mean, abs=1e-12)
        assert float(saving[f"{name}_vs_retrain_ci95"]) == pytest.approx(half, rel=1e-9)
    # compute saved: its low end is the method's accuracy at its interval's low end against
    # retraining's curve at its intervals' high ends, the high end the other way round
    rt2 = json.loads((run_dir(logs, "rt2") / "summary.json").read_text())
    curves = [[np.mean([r["test_accuracy"] for r in m["requests"]]) for m in s["members"]] for s in (rt, rt2)]
    steps = [s["members"][0]["requests"][-1]["cumulative_steps"] for s in (rt, rt2)]
    mine = gc["members"][0]["requests"][-1]["cumulative_steps"]
    assert float(saving["cumulative_steps"]) == mine

    def retrain_steps(accuracy, side):
        points = sorted(zip(steps, [t_interval(c)[0] + side * t_interval(c)[1] for c in curves]))
        if accuracy <= points[0][1]:
            return points[0][0]
        (c0, a0), (c1, a1) = points
        return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0) if accuracy <= a1 else c1

    mean, half = t_interval(stream_gc)
    assert float(saving["compute_saved_low"]) == pytest.approx(1 - mine / retrain_steps(mean - half, +1))
    assert float(saving["compute_saved_high"]) == pytest.approx(1 - mine / retrain_steps(mean + half, -1))
    assert float(saving["compute_saved"]) == pytest.approx(1 - mine / retrain_steps(mean, 0))
    assert float(saving["compute_saved_low"]) <= float(saving["compute_saved"]) <= float(saving["compute_saved_high"])
    table = (out / "request_stream_savings.md").read_text()
    mean, half = t_interval(stream_gc)
    assert f"{mean:.3f} ± {half:.3f}" in table and table.count("\n| Retrain from scratch |") == 2

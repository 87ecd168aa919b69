"""The deletion-request figure: grouping, the per-request table, compute at equal accuracy
(against numbers worked out by hand), Figures 1-4 leaving streams out, and the command
on real streams of the bundled digits."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from src.config import load_config
from src.figures import aggregate, request_stream
from src.figures.runs import load_runs
from src.runner import resolve_device, run
from src.training.trainer import Console
from tests.conftest import QUICKSTART


def fake_stream(logs, name, algorithm, epochs, accuracies, steps_per_request, seed=0):
    """A finished stream run directory with the records the runner writes."""
    run_dir = logs / name
    run_dir.mkdir(parents=True)
    config = {"dataset": {"name": "mnist_5k", "seed": seed}, "unlearning": {"algorithm": algorithm, "epochs": epochs},
              "requests": {"num_requests": len(accuracies), "seed": 0}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text("")
    records = []
    for i, accuracy in enumerate(accuracies):
        records.append({"request": i + 1, "test_accuracy": accuracy, "epochs": epochs,
                        "cumulative_epochs": epochs * (i + 1), "cumulative_steps": steps_per_request * (i + 1),
                        "cumulative_seconds": 0.5 * (i + 1), "all_models_epsilon": 0.0 if algorithm == "retrain"
                        else 1.0 + i, "certified_epsilon": 0.0 if algorithm == "retrain" else 1.0})
    summary = {"finished": True, "run_id": name, "config_file": f"streams/{name}.yaml", "requests": records}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def logs(tmp_path):
    logs = tmp_path / "logs"
    # retrain after every request at two budgets, two seeds each
    fake_stream(logs, "rt-e2-a", "retrain", 2, [0.4, 0.6], 100)
    fake_stream(logs, "rt-e2-b", "retrain", 2, [0.5, 0.5], 100, seed=1)
    fake_stream(logs, "rt-e4-a", "retrain", 4, [0.7, 0.7], 200)
    fake_stream(logs, "rt-e4-b", "retrain", 4, [0.8, 0.6], 200, seed=1)
    # a certified method at one budget (60 steps per request), and one that beats every retrain
    fake_stream(logs, "gc-e1-a", "iteration", 1, [0.55, 0.65], 30)
    fake_stream(logs, "gc-e1-b", "iteration", 1, [0.6, 0.6], 30, seed=1)
    fake_stream(logs, "op-e3", "dp-baseline", 3, [0.9, 0.9], 150)
    return logs


def test_groups_average_their_seeds_per_request(logs):
    runs, others = request_stream.stream_runs(load_runs(logs))
    assert len(runs) == 7 and others == 0
    groups = request_stream.group_runs(runs)
    assert [(g.algorithm, g.epochs, len(g.runs)) for g in groups] == [
        ("retrain", 2, 2), ("retrain", 4, 2), ("dp-baseline", 3, 1), ("iteration", 1, 2)]
    rows = request_stream.csv_rows(groups)
    first = [r for r in rows if r["method"] == "Retrain from scratch" and r["epochs_per_request"] == 2]
    assert [r["test_accuracy"] for r in first] == pytest.approx([0.45, 0.55])
    assert [r["cumulative_steps"] for r in first] == [100, 200]
    # the Student-t 95% interval over the 2 seeds: t(0.975, 1) * sd (ddof=1) / sqrt(2)
    assert first[0]["ci95"] == pytest.approx(12.706204736 * (0.05 * 2 ** 0.5) / 2 ** 0.5)
    assert (first[0]["low"], first[0]["high"]) == pytest.approx((0.45 - first[0]["ci95"], 0.45 + first[0]["ci95"]))
    assert [r["all_models_epsilon"] for r in rows if r["method"] == "Gradient Clipping"] == [1.0, 2.0]


def test_compute_at_equal_accuracy_interpolates_between_retrain_budgets(logs):
    groups = request_stream.group_runs(request_stream.stream_runs(load_runs(logs))[0])
    savings = {row["method"]: row for row in request_stream.savings_rows(groups)}
    # retrain: 200 steps give stream accuracy 0.5, 400 give 0.7. Gradient Clipping: 0.6 in
    # 60 steps; retrain needs 200 + 200 * (0.6 - 0.5) / (0.7 - 0.5) = 300 for it.
    gc = savings["Gradient Clipping"]
    assert gc["stream_accuracy"] == pytest.approx(0.6) and gc["final_accuracy"] == pytest.approx(0.625)
    assert gc["retrain_steps_same_accuracy"] == pytest.approx(300) and gc["retrain_bound"] == "="
    assert gc["compute_saved"] == pytest.approx(1 - 60 / 300)
    # 0.9 is beyond every retrain budget: only a bound against the largest (400 steps)
    op = savings["Output Perturbation"]
    assert op["retrain_bound"] == ">" and op["retrain_steps_same_accuracy"] == 400
    assert op["compute_saved"] == pytest.approx(1 - 300 / 400)
    # after the last request: retrain 0.55 in 200 steps, 0.65 in 400; Gradient Clipping 0.625
    # in 60, which retrain reaches at 200 + 200 * 0.075 / 0.1 = 350
    assert gc["retrain_steps_same_final_accuracy"] == pytest.approx(350) and gc["final_bound"] == "="
    assert gc["compute_saved_final"] == pytest.approx(1 - 60 / 350)


def test_figures_1_to_4_leave_streams_out(logs):
    runs = load_runs(logs)
    assert all("a stream of deletion requests" in aggregate.run_matches_figure(r, 1) for r in runs)


def test_the_command_on_real_streams(tmp_path, session_checkpoints, capsys):
    for algorithm, epochs in (("iteration", 1), ("retrain", 1), ("retrain", 2)):
        config = load_config(QUICKSTART, [f"unlearning.algorithm={algorithm}", f"unlearning.epochs={epochs}",
                                          "requests.sizes=[300, 60]", f"logs_dir={tmp_path / 'logs'}",
                                          f"checkpoints_dir={session_checkpoints}", "training.epochs=3",
                                          f"name={algorithm}-{epochs}"])
        run(config, str(tmp_path / "streams" / f"{algorithm}.yaml"), resolve_device("cpu"), Console(quiet=True))
    assert request_stream.main(["--logs", str(tmp_path / "logs"), "--folder", str(tmp_path / "streams"),
                                "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "request_stream.png").stat().st_size > 10_000
    with open(tmp_path / "out" / "request_stream.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 and {r["request"] for r in rows} == {"1", "2"}
    with open(tmp_path / "out" / "request_stream_savings.csv") as handle:
        (saving,) = list(csv.DictReader(handle))
    assert saving["method"] == "Gradient Clipping" and saving["retrain_bound"] in "<=>"
    # nothing to draw: one line, exit 2
    assert request_stream.main(["--logs", str(tmp_path / "logs"), "--folder", str(tmp_path / "elsewhere")]) == 2
    assert "no finished deletion-request streams" in capsys.readouterr().err


def test_compute_saved_interval_takes_both_spreads_at_their_worst(tmp_path):
    """Three seeds each, spread 0.01: every interval is the mean +- t(0.975, 2) * 0.01 / sqrt(3)
    = 0.02484. Retrain: 0.5 in 200 steps, 0.7 in 400; Gradient Clipping 0.6 in 120."""
    logs = tmp_path / "logs"
    for seed, shift in enumerate((-0.01, 0.0, 0.01)):
        fake_stream(logs, f"rt-e2-{seed}", "retrain", 2, [0.5 + shift] * 2, 100, seed=seed)
        fake_stream(logs, f"rt-e4-{seed}", "retrain", 4, [0.7 + shift] * 2, 200, seed=seed)
        fake_stream(logs, f"gc-e1-{seed}", "iteration", 1, [0.6 + shift] * 2, 60, seed=seed)
    groups = request_stream.group_runs(request_stream.stream_runs(load_runs(logs))[0])
    (gc,) = request_stream.savings_rows(groups)
    half = 4.302652729911275 * 0.01 / 3 ** 0.5
    assert gc["stream_accuracy_ci95"] == pytest.approx(half)
    assert gc["compute_saved"] == pytest.approx(1 - 120 / 300)
    # low end: 0.6 - half against retraining's high ends (0.5 + half, 0.7 + half)
    assert gc["compute_saved_low"] == pytest.approx(1 - 120 / (200 + 200 * (0.1 - 2 * half) / 0.2))
    # high end: 0.6 + half against retraining's low ends
    assert gc["compute_saved_high"] == pytest.approx(1 - 120 / (200 + 200 * (0.1 + 2 * half) / 0.2))
    # no retraining at 1 epoch per request: no paired comparison
    assert gc["vs_retrain_pairs"] == gc["stream_vs_retrain"] == ""
    table = request_stream.savings_markdown(groups, [gc])
    assert "| 60% (52% to 66%) |" in table

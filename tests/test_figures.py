"""src/figures: the notebook's aggregation on hand-written run logs with known answers."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from src.figures import aggregate
from src.figures.__main__ import main
from src.figures.runs import FigureInputError, load_runs

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- hand-written runs

def pabi_config(lam=10.0, c1=10.0, eta=1e-4, c0=0.01, dataset="mnist", epochs=3, **extra):
    config = {
        "dataset": {"name": dataset, "forget_split": 0.1},
        "model": {"name": "tiny_net"},
        "training": {"dp_sgd": None, "group_dp": None},
        "unlearning": {"algorithm": "iteration", "epochs": epochs, "max_lr": eta,
                       "weight_decay": lam, "init_model_clip": c0, "init_sigma": 0,
                       "iteration": {"grad_clip": c1, "epsilon_renyi_target": 1}},
        "compat": {"reuse_noise": False},
    }
    for dotted, value in extra.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def write_run(logs, run_id, config, val, cert=None, delta=1e-5, extra_rows=(), config_file=None,
              finished=True, summary=None):
    """A run directory as experiment.py writes it: val[e-1] is Val (Unlearn) at epoch e,
    cert = (certified epsilon, published epsilon) for the certificate row."""
    directory = Path(logs) / run_id
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    rows = list(extra_rows)
    if cert is not None:
        rows.append({"epsilon": cert[0], "delta": delta, "certified_epsilon": cert[0],
                     "certified_delta": delta, "epsilon_published": cert[1],
                     "certificate_valid": True, "state_step": 1})
    for epoch, acc in enumerate(val, start=1):
        rows.append({"Val (Unlearn)_accuracy": acc, "Val (Unlearn)_loss": 1.0, "unlearn_epoch": epoch})
    rows.append({"Test_accuracy": 0.5, "Test_loss": 1.0})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (directory / "summary.json").write_text(json.dumps({
            "run_id": run_id, "finished": True,
            "config_file": config_file or f"budget_curve_runs/test/{run_id}.yaml",
            **(summary or {})}))
    return directory


def write_group(logs, prefix, config, vals, cert=(7.0812, 1.0036), **kw):
    for i, val in enumerate(vals):
        write_run(logs, f"{prefix}{i}", config, val, cert=cert, **kw)


def gc_series(logs, min_runs=4, best_so_far=False, figure=1, basis="certified"):
    series, _ = aggregate.budget_series(load_runs(logs), figure, basis, min_runs, best_so_far)
    return [s for s in series if s.algorithm == "iteration"]


# ---------------------------------------------------------------- per-run curve, mean, interval

def test_val_curve_takes_max_per_integer_epoch_and_running_max(tmp_path):
    rows = [{"Val (Unlearn)_accuracy": 0.9, "unlearn_epoch": 1.5},  # fine-grained: not an epoch
            {"Val (Unlearn)_accuracy": 0.2, "unlearn_epoch": 2},    # two rows at e = 2: max
            {"Val (Unlearn)_accuracy": 0.1, "unlearn_epoch": 2.0}]
    write_run(tmp_path, "r", pabi_config(), [0.5, 0.4, 0.3, 0.6], extra_rows=rows)
    (run,) = load_runs(tmp_path)
    np.testing.assert_allclose(aggregate.val_curve(run, best_so_far=False), [0.5, 0.4, 0.3, 0.6])
    np.testing.assert_allclose(aggregate.val_curve(run, best_so_far=True), [0.5, 0.5, 0.5, 0.6])


def test_running_max_keeps_missing_epochs_missing():
    out = aggregate.running_max(np.array([0.3, np.nan, 0.2, 0.5, np.nan]))
    np.testing.assert_array_equal(np.isnan(out), [False, True, False, False, True])
    np.testing.assert_allclose(out[[0, 2, 3]], [0.3, 0.3, 0.5])


def test_mean_ci_is_population_std_over_sqrt_n():
    mean, ci = aggregate.mean_ci([0.5, 0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.65)
    assert ci == pytest.approx(1.96 * math.sqrt(0.0125) / 2)  # std ddof=0 = sqrt(0.0125)
    assert aggregate.mean_ci([0.4]) == (0.4, 0.0)


# ---------------------------------------------------------------- groups and selection

def test_best_group_is_chosen_per_epoch(tmp_path):
    # Group A (C1 = 10) leads at epoch 1, group B (C1 = 100) at epochs 2 and 3.
    write_group(tmp_path, "a", pabi_config(c1=10), [[0.60, 0.61, 0.62]] * 2 + [[0.64, 0.63, 0.62]] * 2)
    write_group(tmp_path, "b", pabi_config(c1=100), [[0.50, 0.70, 0.70], [0.54, 0.74, 0.60],
                                                    [0.50, 0.70, 0.60], [0.54, 0.74, 0.60]])
    (s,) = gc_series(tmp_path)
    assert [p.epoch for p in s.points] == [1, 2, 3]
    assert [p.group for p in s.points] == ["lambda=10.0;C1=10;eta=0.0001;C0=0.01",
                                           "lambda=10.0;C1=100;eta=0.0001;C0=0.01",
                                           "lambda=10.0;C1=100;eta=0.0001;C0=0.01"]
    np.testing.assert_allclose([p.mean for p in s.points], [0.62, 0.72, 0.625])
    np.testing.assert_allclose([p.ci95 for p in s.points], [1.96 * 0.02 / 2, 1.96 * 0.02 / 2,
                                                            1.96 * np.std([0.7, 0.6, 0.6, 0.6]) / 2])
    assert [p.n_runs for p in s.points] == [4, 4, 4]
    # Best-so-far changes the answer at epoch 3: B's runs keep 0.70 / 0.74, mean 0.72.
    (s,) = gc_series(tmp_path, best_so_far=True)
    np.testing.assert_allclose([p.mean for p in s.points], [0.62, 0.72, 0.72])


def test_min_runs_filter(tmp_path):
    write_group(tmp_path, "a", pabi_config(c0=0.01), [[0.6, 0.6]] * 4)
    write_group(tmp_path, "small", pabi_config(c0=0.1), [[0.9, 0.9]] * 3)  # best, but 3 runs
    (s,) = gc_series(tmp_path, min_runs=4)
    assert [p.mean for p in s.points] == [0.6, 0.6] and "C0=0.01" in s.points[0].group
    (s,) = gc_series(tmp_path, min_runs=3)
    assert [p.mean for p in s.points] == [0.9, 0.9] and [p.n_runs for p in s.points] == [3, 3]


def test_eta_lambda_filter(tmp_path):
    write_group(tmp_path, "ok", pabi_config(lam=50, eta=0.01), [[0.6]] * 4)  # eta*lambda = 0.5
    write_group(tmp_path, "bad", pabi_config(lam=100, eta=0.01), [[0.9]] * 4)  # eta*lambda = 1
    (s,) = gc_series(tmp_path)
    assert s.points[0].mean == 0.6 and s.points[0].group.startswith("lambda=50")


def test_ties_go_to_the_first_group_in_sorted_order(tmp_path):
    write_group(tmp_path, "z", pabi_config(c1=100), [[0.7]] * 4)
    write_group(tmp_path, "y", pabi_config(c1=10), [[0.7]] * 4)
    (s,) = gc_series(tmp_path)
    assert "C1=10;" in s.points[0].group


def test_runs_with_different_budgets_share_a_group(tmp_path):
    write_group(tmp_path, "long", pabi_config(), [[0.5, 0.6, 0.7]] * 4)
    write_group(tmp_path, "short", pabi_config(), [[0.7]] * 4)
    (s,) = gc_series(tmp_path)
    assert [(p.epoch, p.n_runs) for p in s.points] == [(1, 8), (2, 4), (3, 4)]
    assert s.points[0].mean == pytest.approx(0.6)


# ---------------------------------------------------------------- epsilon levels

def test_certified_basis_shows_each_certified_level(tmp_path):
    # Calibrated the reference's way: certified 7.08, printed 1.0036 (-> "1").
    write_group(tmp_path, "ref", pabi_config(), [[0.7]] * 4, cert=(7.0812, 1.0036))
    # Calibrated with iteration.epsilon_target: certified 1, the reference would print 0.14.
    write_group(tmp_path, "new", pabi_config(), [[0.6]] * 4, cert=(1.0000004, 0.1402))
    cert = gc_series(tmp_path)
    assert [s.label for s in cert] == ["Gradient Clipping ε=1 (published ε=0.14)",
                                       "Gradient Clipping ε=7.08 (published ε=1)"]
    assert [(s.points[0].eps_certified, s.points[0].eps_published) for s in cert] == [(1.0, 0.1402), (7.08, 1.0036)]
    pub = gc_series(tmp_path, basis="published")
    assert [s.label for s in pub] == ["Gradient Clipping ε=0.14 (certified ε=1)",
                                      "Gradient Clipping ε=1 (certified ε=7.08)"]


def test_published_basis_applies_the_notebook_filters(tmp_path):
    write_group(tmp_path, "gc", pabi_config(), [[0.7]] * 4, cert=(30.1, 10.0036))  # published 10 > 2
    write_run(tmp_path, "rt", pabi_config(**{"unlearning__algorithm": "retrain"}), [0.4],
              cert=(0.0, 0.0))
    assert gc_series(tmp_path, basis="published") == []
    assert [s.label for s in gc_series(tmp_path)] == ["Gradient Clipping ε=30.1 (published ε=10)"]
    series, _ = aggregate.budget_series(load_runs(tmp_path), 1, "published", 4, True)
    assert [(s.method, s.label) for s in series] == [("Retrain from scratch", "Retrain from scratch ε=0")]


def test_figure4_levels_map_and_skip_above_50(tmp_path):
    for name, cert in (("a", (1.91, 0.1036)), ("b", (7.0812, 1.0036)), ("c", (30.1, 10.0036)),
                       ("d", (166.0, 100.0036))):
        write_group(tmp_path, name, pabi_config(), [[0.5]] * 4, cert=cert)
    pub = gc_series(tmp_path, figure=4, basis="published")
    assert [s.level for s in pub] == [0.1, 1.0, 10.0]
    cert = gc_series(tmp_path, figure=4)
    assert [s.level for s in cert] == [1.91, 7.08, 30.1]
    assert cert[0].label == "Gradient Clipping ε=1.91 (published ε=0.104)"


def test_void_certificate_is_never_labelled_certified(tmp_path):
    cfg = pabi_config(compat__reuse_noise=True)
    for i in range(4):
        write_run(tmp_path, f"r{i}", cfg, [0.7], cert=(7.0812, 1.0036),
                  extra_rows=[{"certificate_valid": False}])
    (s,) = gc_series(tmp_path)
    assert s.label == "Gradient Clipping, no valid certificate (published ε=1)"
    assert s.points[0].eps_certified == math.inf


def test_compat_variants_are_separate_series(tmp_path):
    write_group(tmp_path, "fresh", pabi_config(), [[0.6]] * 4)
    write_group(tmp_path, "reuse", pabi_config(compat__reuse_noise=True), [[0.8]] * 4)
    labels = [s.label for s in gc_series(tmp_path)]
    assert labels == ["Gradient Clipping ε=7.08 (published ε=1) [reuse_noise=False]",
                      "Gradient Clipping ε=7.08 (published ε=1) [reuse_noise=True]"]


def test_model_clipping_filters_and_dp_sgd_selection(tmp_path):
    cc = {"algorithm": "contractive_coefficients", "contractive_coefficients": {
        "model_clip": 7, "grad_clip": 0.01, "sigma": 0.01, "noise_addition_after_projection": True}}
    base = pabi_config()
    for i in range(4):
        good = {**base, "unlearning": {**base["unlearning"], **cc}}
        write_run(tmp_path, f"cc{i}", good, [0.7], cert=(1.0, 1.0))
        write_run(tmp_path, f"hi{i}", good, [0.9], cert=(1.0, 1.0), delta=2e-5)
        cc2 = {**cc, "contractive_coefficients": {**cc["contractive_coefficients"],
                                                  "noise_addition_after_projection": False}}
        write_run(tmp_path, f"cc2{i}", {**base, "unlearning": {**base["unlearning"], **cc2}}, [0.9],
                  cert=(1.0, 1.0))
    series, dropped = aggregate.budget_series(load_runs(tmp_path), 1, "certified", 4, True)
    assert [(s.method, s.points[0].mean) for s in series] == [("Model Clipping", 0.7)]
    assert dropped["Model Clipping: final delta above 1e-5"] == 4
    assert sum(v for k, v in dropped.items() if "cc2" in k) == 4


def test_figure3_dp_sgd_needs_group_dp_and_half_percent_forget_set(tmp_path):
    dp = pabi_config(dataset="cifar10_feature", unlearning__algorithm="dp-sgd",
                     training__group_dp=True, dataset__forget_split=0.005)
    write_run(tmp_path, "dp1", dp, [0.6, 0.5], cert=(50.0, 50.0))
    write_run(tmp_path, "dp2", {**dp, "dataset": {"name": "cifar10_feature", "forget_split": 0.1}},
              [0.9, 0.9], cert=(50.0, 50.0))
    series, _ = aggregate.budget_series(load_runs(tmp_path), 3, "certified", 4, True)
    (s,) = series
    assert s.label == "DP-SGD ε=50 (published ε=50)" and s.points[0].group == "all"
    assert [p.mean for p in s.points] == [0.6, 0.6]  # best-so-far; not grouped, so 1 run is enough


# ---------------------------------------------------------------- reading

def test_unfinished_runs_and_folder(tmp_path):
    write_run(tmp_path, "done", pabi_config(), [0.5], config_file="budget_curve_runs/a/x.yaml")
    write_run(tmp_path, "other", pabi_config(), [0.5], config_file="eps_sweep_runs/mnist/y.yaml")
    write_run(tmp_path, "running", pabi_config(), [0.5], finished=False)
    assert [r.run_id for r in load_runs(tmp_path)] == ["done", "other"]
    assert [r.run_id for r in load_runs(tmp_path, "budget_curve_runs")] == ["done"]
    assert [r.run_id for r in load_runs(tmp_path, "budget_curve_runs/a/")] == ["done"]
    assert load_runs(tmp_path, "budget_curve") == []


def test_corrupt_line_names_file_and_line(tmp_path):
    directory = write_run(tmp_path, "r", pabi_config(), [0.5, 0.6])
    with open(directory / "metrics.jsonl", "a") as handle:
        handle.write('{"Val (Unlearn)_accuracy": 0.7, "unlearn_epo\n')
    lines = (directory / "metrics.jsonl").read_text().count("\n")
    with pytest.raises(FigureInputError, match=rf"metrics.jsonl, line {lines}: not valid JSON"):
        load_runs(tmp_path)
    # A truncated per-step row is caught too, although its content is never needed.
    (directory / "metrics.jsonl").write_text('{"Test_accuracy": 0.5}\n{"loss": 1.0, "accur\n')
    with pytest.raises(FigureInputError, match="metrics.jsonl, line 2: not valid JSON"):
        load_runs(tmp_path)


# ---------------------------------------------------------------- CLI and drawing

def test_cli_corrupt_line_exits_2_without_traceback(tmp_path, capsys):
    directory = write_run(tmp_path, "r", pabi_config(), [0.5])
    (directory / "metrics.jsonl").write_text('{"epsilon": 1.0}\nnot json\n')
    assert main(["--figure", "1", "--logs", str(tmp_path), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert f"{directory / 'metrics.jsonl'}, line 2" in err and "Traceback" not in err


def test_cli_no_matching_runs(tmp_path, capsys):
    assert main(["--figure", "1", "--logs", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    write_group(tmp_path, "gc", pabi_config(dataset="cifar100_feature"), [[0.5]] * 4)
    assert main(["--figure", "1", "--logs", str(tmp_path), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "none of the 4 finished runs" in err and "dataset cifar100_feature not in Figure 1" in err
    assert main(["--figure", "1", "--logs", str(tmp_path), "--folder", "nowhere"]) == 2
    assert "no finished runs in" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_cli_subprocess_exit_code_and_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "src.figures", "--figure", "4", "--logs",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no finished runs") and "Traceback" not in proc.stderr


def mini_budget_logs(logs):
    """A miniature Figure 1: mnist_5k, retrain, output perturbation and two GC levels."""
    rng = np.random.default_rng(0)
    curve = lambda start, n=6: np.clip(start + 0.04 * np.arange(n) + rng.normal(0, 0.01, n), 0, 1)
    for i in range(4):
        write_run(logs, f"rt{i}", pabi_config(dataset="mnist_5k", epochs=6,
                                              unlearning__algorithm="retrain"), curve(0.5), cert=(0.0, 0.0))
        write_run(logs, f"op{i}", pabi_config(dataset="mnist_5k", epochs=6,
                                              unlearning__algorithm="dp-baseline"), curve(0.45),
                  cert=(1.0, 1.0))
        write_run(logs, f"gc{i}", pabi_config(dataset="mnist_5k", epochs=6), curve(0.6), cert=(7.0812, 1.0036))
        write_run(logs, f"gd{i}", pabi_config(dataset="mnist_5k", epochs=6), curve(0.55), cert=(1.0, 0.1402))


def test_cli_renders_figure1_png_pdf_and_csv(tmp_path, capsys):
    mini_budget_logs(tmp_path / "logs")
    out = tmp_path / "figures"
    assert main(["--figure", "1", "--logs", str(tmp_path / "logs"), "--out", str(out),
                 "--prefix", "mini_"]) == 0
    png = out / "mini_figure1.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert (out / "mini_figure1.pdf").read_bytes()[:5] == b"%PDF-"
    import csv
    rows = list(csv.DictReader(open(out / "mini_figure1.csv")))
    assert tuple(rows[0]) == aggregate.CSV_COLUMNS
    assert len(rows) == 4 * 6  # four series, six budgets
    gc = [r for r in rows if r["method"] == "Gradient Clipping" and r["epsilon_certified"] == "7.08"]
    assert len(gc) == 6 and {r["epsilon_published"] for r in gc} == {"1.0036"}
    assert {r["n_runs"] for r in rows} == {"4"} and {r["panel"] for r in rows} == {"mnist_5k"}
    assert "Gradient Clipping ε=7.08 (published ε=1) (6 points)" in capsys.readouterr().out


def convergence_logs(logs, fine=True):
    """Figure 2: T = 3 noisy steps, 10 steps per epoch, rows every step then every half epoch."""
    for i in range(2):
        rows = [{"Val (Train)_accuracy": 0.55}, {"pabi_steps": 3.0}]
        if fine:
            rows += [{"Val (Unlearn)_accuracy": a + 0.01 * i, "unlearn_epoch": s / 10}
                     for s, a in ((1, 0.3), (2, 0.2), (3, 0.1))]
            rows += [{"Val (Unlearn)_accuracy": 0.3 + 0.01 * i, "unlearn_epoch": 0.5}]
        write_run(logs, f"gc{i}", pabi_config(dataset="cifar10", epochs=2), [0.4, 0.5],
                  cert=(7.0812, 1.0036), extra_rows=rows)
        write_run(logs, f"rt{i}", pabi_config(dataset="cifar10", epochs=4, unlearning__algorithm="retrain"),
                  [0.2, 0.3, 0.4, 0.5], cert=(0.0, 0.0),
                  extra_rows=[{"Val (Post Unlearning Setup)_accuracy": 0.1}])


def test_figure2_phases(tmp_path):
    convergence_logs(tmp_path)
    (c,), _ = aggregate.convergence(load_runs(tmp_path))
    # The first pabi_steps - 1 = 2 rows are the noisy phase, prefixed with the trained model.
    assert [(p.epoch, round(p.mean, 3)) for p in c.noisy.points] == [(0, 0.55), (0.1, 0.305), (0.2, 0.205)]
    assert [p.epoch for p in c.finetune.points] == [0.3, 0.5, 1, 2]
    assert c.finetune_start == pytest.approx(0.2)
    assert [p.epoch for p in c.retrain.points] == [0, 1, 2]  # cut at the unlearning budget
    assert c.retrain.points[0].mean == 0.1 and c.noisy.points[1].group.startswith("phase=noisy;lambda=")


def test_cli_figure2_png_and_missing_fine_grained_rows(tmp_path, capsys):
    convergence_logs(tmp_path / "fine")
    assert main(["--figure", "2", "--logs", str(tmp_path / "fine"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "figure2.png").read_bytes()[:8] == PNG_MAGIC
    convergence_logs(tmp_path / "coarse", fine=False)
    assert main(["--figure", "2", "--logs", str(tmp_path / "coarse")]) == 2
    assert "unlearning.fine_grained_validation: true" in capsys.readouterr().err

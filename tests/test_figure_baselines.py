"""The forgetting metrics of real runs, and the baselines comparison built from run logs:
ToW against the matching retrain run, selection on val, the table and the figure."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from src.figures.__main__ import main as figures_main
from tests.conftest import run_main

EMPIRICAL = {"unlearning.momentum": 0.9, "unlearning.weight_decay": 0.0005, "unlearning.max_lr": 0.03,
             "unlearning.lr_schedule": "constant"}


def summary_of(logs, name):
    (run_dir,) = [p for p in logs.iterdir() if p.name.rsplit("-", 1)[0] == name]
    return json.loads((run_dir / "summary.json").read_text()), [json.loads(l) for l in open(run_dir / "metrics.jsonl")]


def test_every_run_measures_forgetting_and_tow_finds_its_retrain_run(make_config, tmp_path):
    folder = tmp_path / "cmp"
    rt, _ = make_config("rt", {"unlearning.algorithm": "retrain"}, directory=folder)
    ft, _ = make_config("ft", {"unlearning.algorithm": "ft", **EMPIRICAL}, directory=folder)
    gc, _ = make_config("gc", {}, directory=folder)
    for config in (rt, ft, gc):
        assert run_main("--config", config, "--quiet") == 0
    logs = tmp_path / "logs"
    retrain, _ = summary_of(logs, "rt")
    ev = retrain["evaluation"]
    assert ev["tow"]["tow"] == 1.0 and ev["tow"]["tow_mia"] == 1.0 and ev["tow"]["reference_run"] is None
    assert set(ev["mia_svc"]) == {"correctness", "confidence", "entropy", "m_entropy", "prob", "loss"}
    assert 0 <= ev["mia_efficacy"] <= 1 and ev["mia_efficacy"] == ev["mia_svc"]["confidence"]
    assert set(ev["mia_threshold"]["confidence"]) == {"efficacy", "auc", "tpr@fpr=0.1", "tpr@fpr=0.01"}
    finetuned, rows = summary_of(logs, "ft")
    assert finetuned["certificate"]["certified_epsilon"] is None and finetuned["certificate"]["certificate_valid"] is False
    assert finetuned["plan"]["certificate_invalid_because"] == ["empirical method"]
    t = finetuned["evaluation"]["tow"]
    assert t["reference_run"] == retrain["run_id"]
    acc, ref = finetuned["evaluation"]["accuracy"], ev["accuracy"]
    expected = 1
    for split in ("forget", "retain", "test"):
        expected *= 1 - abs(acc[split] - ref[split])
    assert t["tow"] == pytest.approx(expected) and t["tow"] < 1
    final = rows[-1]
    assert final["eval/tow"] == t["tow"] and final["eval/test_accuracy"] == acc["test"]
    assert finetuned["test_accuracy"] == pytest.approx(acc["test"])  # the trainer's test pass agrees
    assert finetuned["compute"] == {"gradient_evaluations": 2 * 3240, "train_size": 3600}
    certified, _ = summary_of(logs, "gc")
    assert certified["evaluation"]["tow"]["reference_run"] == retrain["run_id"]

    out = tmp_path / "fig"
    assert figures_main(["--figure", "baselines", "--logs", str(logs), "--folder", str(folder), "--out", str(out)]) == 0
    table = list(csv.DictReader(open(out / "baselines.csv")))
    by_method = {row["method"]: row for row in table}
    assert by_method["Retrain"]["tow"] == "1" and by_method["FT"]["certified_epsilon"] == "none"
    assert float(by_method["FT"]["tow"]) == pytest.approx(t["tow"], rel=1e-5)
    assert by_method["Gradient Clipping (eps 1)"]["certified_epsilon"] == "1"
    assert (out / "baselines.png").stat().st_size > 0 and "| FT | none |" in (out / "baselines.md").read_text()


# -- fabricated run directories with known numbers ----------------------------------------


def write_run(logs, name, algorithm, seed, lr, accuracy, fingerprint):
    run_dir = logs / name
    run_dir.mkdir(parents=True)
    config = {"name": name, "dataset": {"name": "mnist_5k", "seed": seed, "forget_split": 0.1},
              "model": {"name": "tiny_net"}, "unlearning": {"algorithm": algorithm, "max_lr": lr}, "global_seed": 1}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text("")
    evaluation = {"identity": {"fingerprint": fingerprint, "model": "tiny_net", "algorithm": algorithm,
                               "global_seed": 1},
                  "accuracy": accuracy, "mia_svc": {"confidence": 0.5}, "mia_efficacy": 0.5}
    summary = {"run_id": name, "finished": True, "config_file": "cmp/x.yaml", "evaluation": evaluation,
               "certificate": {"certified_epsilon": 0.0 if algorithm == "retrain" else None},
               "timings": {"unlearn_seconds": 1.0}, "compute": {"gradient_evaluations": 3600, "train_size": 3600}}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_selection_uses_tow_on_val_never_test(tmp_path):
    logs = tmp_path / "logs"
    retrain = {"forget": 0.6, "retain": 0.7, "val": 0.65, "test": 0.66}
    # lr 0.01 is closer to retrain on val, lr 0.1 on test: selection must pick lr 0.01
    close_on_val = {"forget": 0.6, "retain": 0.7, "val": 0.65, "test": 0.5}
    close_on_test = {"forget": 0.6, "retain": 0.7, "val": 0.45, "test": 0.66}
    for seed in (1, 2, 3):
        write_run(logs, f"rt-{seed}", "retrain", seed, 0.1, retrain, f"fp{seed}")
        write_run(logs, f"ft-a-{seed}", "ft", seed, 0.01, close_on_val, f"fp{seed}")
        write_run(logs, f"ft-b-{seed}", "ft", seed, 0.1, close_on_test, f"fp{seed}")
    out = tmp_path / "fig"
    assert figures_main(["--figure", "baselines", "--logs", str(logs), "--out", str(out), "--prefix", "t_"]) == 0
    rows = {r["method"]: r for r in csv.DictReader(open(out / "t_baselines.csv"))}
    assert rows["FT"]["setting"] == "max_lr=0.01" and rows["FT"]["n_seeds"] == "3"
    assert float(rows["FT"]["test"]) == pytest.approx(0.5) and float(rows["FT"]["tow"]) == pytest.approx(1 - 0.16)
    assert "max_lr=0.01: 1.000" in rows["FT"]["selection_grid_tow_val"]
    markdown = (out / "t_baselines.md").read_text()
    assert "| FT | none | max_lr=0.01 | 3 | 60.0 ± 0.0 | 70.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 0.840 ± 0.000 |" in markdown


def test_the_reference_is_the_retrain_run_of_the_same_forget_set_and_model(tmp_path):
    from src.evaluation.reference import find_reference

    logs = tmp_path / "logs"
    accuracy = {"forget": 0.6, "retain": 0.7, "val": 0.65, "test": 0.66}
    write_run(logs, "rt-a", "retrain", 1, 0.1, accuracy, "fp-a")
    write_run(logs, "rt-b", "retrain", 2, 0.1, accuracy, "fp-b")
    write_run(logs, "ft-a", "ft", 1, 0.1, accuracy, "fp-a")
    me = {"fingerprint": "fp-a", "model": "tiny_net", "global_seed": 1}
    assert find_reference(logs, me, "retrain")["run_id"] == "rt-a"
    assert find_reference(logs, {**me, "fingerprint": "fp-c"}, "retrain") is None  # another forget set
    assert find_reference(logs, {**me, "model": "tinier_net"}, "retrain") is None  # another model
    (logs / "rt-b" / "summary.json").write_text("{not json")  # a broken run is never a reference
    assert find_reference(logs, {**me, "fingerprint": "fp-b"}, "retrain") is None


def test_the_comparison_folder_is_the_generators_and_every_config_plans():
    from collections import Counter

    from src.config import load_config
    from src.runner import make_plan
    from tests.conftest import REPO, run_cli

    result = run_cli("tools/make_baseline_configs.py", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted((REPO / "baselines_runs" / "mini-mnist5k").glob("*.yaml"))
    algorithms = Counter()
    for file in files:
        plan = make_plan(load_config(file))
        algorithms[plan.config.unlearning.algorithm] += 1
        assert (plan.privacy.certified_epsilon is None) == (plan.config.unlearning.algorithm not in (
            "retrain", "iteration", "contractive_coefficients", "dp-baseline"))
    # one split x 2 forget sets, 32 members each: one run each of retrain and the certified methods, a
    # grid of 3 for every empirical method (NegGrad+ twice: with and without SAM)
    assert algorithms == {"retrain": 2, "iteration": 2, "contractive_coefficients": 2, "dp-baseline": 2,
                          "ft": 6, "ga": 6, "neggrad_plus": 12, "l1_sparse": 6, "scrub": 6, "random_label": 6,
                          "salun": 6, "influence": 6, "sharp_minmax": 6}
    assert {load_config(f).seeds for f in files} == {32}

"""Paired comparisons of methods over shared seeds (src/evaluation/paired.py) and the table's
section that says which differences in ToW are significant (src/figures/baselines_paired.py)."""

from __future__ import annotations

import csv
import math

import pytest
from scipy import stats

from src.evaluation.paired import holm, paired_difference
from src.figures.__main__ import main as figures_main
from tests.test_figure_baselines import write_run


def test_the_paired_difference_is_scipys_paired_t_test():
    a = {1: 0.91, 2: 0.88, 3: 0.95, 4: 0.90, 5: 0.87, 9: 0.5}
    b = {1: 0.89, 2: 0.87, 3: 0.92, 4: 0.90, 5: 0.84, 7: 0.1}  # seeds 7 and 9 unpaired: left out
    d = paired_difference(a, b)
    x, y = [a[s] for s in (1, 2, 3, 4, 5)], [b[s] for s in (1, 2, 3, 4, 5)]
    reference = stats.ttest_rel(x, y)
    low, high = reference.confidence_interval(0.95)
    assert d.n == 5 and d.mean == pytest.approx(0.018)
    assert d.p == pytest.approx(reference.pvalue, rel=1e-9)
    assert d.mean - d.ci95 == pytest.approx(low, rel=1e-9) and d.mean + d.ci95 == pytest.approx(high, rel=1e-9)
    # by hand: differences 0.02, 0.01, 0.03, 0, 0.03; sd 0.013038; t(0.975, 4) = 2.776445
    assert d.ci95 == pytest.approx(2.776445 * 0.0130384 / math.sqrt(5), rel=1e-5)
    assert paired_difference({1: 1.0}, {2: 1.0}) is None
    assert paired_difference({1: 1.0}, {1: 0.5}).p is None


def test_holm_adjusts_step_down_and_keeps_missing_values():
    # sorted 0.01, 0.03, 0.04 of m = 3: 0.03, max(0.03, 0.06), max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_pairing_finds_a_difference_the_separate_intervals_cannot(tmp_path):
    """Two methods whose per-seed ToW moves with the seed (a shared pretrained model) but is
    always 0.01 apart: their separate intervals overlap, the paired test calls it significant;
    a third method equal to the second on average, but not seed by seed, is not."""
    logs = tmp_path / "logs"
    forget = [0.70, 0.80, 0.60, 0.75, 0.65, 0.72]
    for seed, f in enumerate(forget):
        base = {"retain": 0.9, "val": 0.85, "test": 0.85}
        write_run(logs, f"rt-{seed}", "retrain", seed, 0.1, {"forget": 0.5, **base}, f"fp{seed}")
        write_run(logs, f"ft-{seed}", "ft", seed, 0.1, {"forget": f, **base}, f"fp{seed}")
        write_run(logs, f"ga-{seed}", "ga", seed, 0.1, {"forget": f + 0.01, **base}, f"fp{seed}")
        shuffled = forget[(seed + 3) % len(forget)] + 0.01
        write_run(logs, f"rl-{seed}", "random_label", seed, 0.1, {"forget": shuffled, **base}, f"fp{seed}")
    out = tmp_path / "fig"
    assert figures_main(["--figure", "baselines", "--logs", str(logs), "--out", str(out)]) == 0
    table = {r["method"]: r for r in csv.DictReader(open(out / "baselines.csv"))}
    ft, ga = table["FT"], table["GA (NegGrad)"]
    # separate intervals overlap ...
    assert float(ft["tow"]) - float(ft["tow_ci95"]) < float(ga["tow"]) + float(ga["tow_ci95"])
    paired = list(csv.DictReader(open(out / "baselines_paired.csv")))
    by_pair = {(r["method"], r["against"]): r for r in paired}
    ga_ft = by_pair[("GA (NegGrad)", "FT")]
    assert ga_ft["n_pairs"] == "6" and float(ga_ft["tow_difference"]) == pytest.approx(-0.01)
    assert ga_ft["significant"] == "True"  # ... the pairs are 0.01 apart every time
    rl_ft = by_pair[("Random labels", "FT")]
    assert float(rl_ft["tow_difference"]) == pytest.approx(-0.01) and rl_ft["significant"] == "False"
    independent = stats.ttest_rel([1 - forget[(s + 3) % 6] - 0.01 + 0.5 for s in range(6)],
                                  [1 - f + 0.5 for f in forget]).pvalue
    assert float(rl_ft["p"]) == pytest.approx(independent, rel=1e-3)
    # Holm over the forget set's three comparisons (rl and ga against the best, rl against ga)
    assert float(rl_ft["p_holm"]) >= float(rl_ft["p"])
    markdown = (out / "baselines.md").read_text()
    assert "## Which differences in ToW are significant" in markdown
    assert "| 1 | FT | " in markdown and "| GA (NegGrad) (rank 2) | -0.010 ± 0.000 | 6 |" not in markdown
    assert "| FT (rank 1) | -0.010 ± 0.000 | 6 |" in markdown

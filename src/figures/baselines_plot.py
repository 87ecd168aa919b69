"""Drawing of the baselines comparison (src/figures/baselines.py): one row of panels per
forget set, test accuracy, forget accuracy and ToW against compute, one marker per method at
its selected setting with its 95% interval over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from src.figures.plots import RC, _save  # noqa: E402

PANELS = (("test", "Test accuracy"), ("forget", "Forget accuracy"), ("tow", "ToW (1 = retrain)"))
# Certified methods: squares in muted colours none of the empirical methods (tab10 circles) use.
CERTIFIED = {"iteration": "#000080", "contractive_coefficients": "#b8860b", "dp-baseline": "#008b8b",
             "dp-sgd": "#8b0000"}
# Methods of (almost) equal compute would hide each other: each is shifted by a few percent.
JITTER = 0.3


def _style(row, empirical_index: int):
    if row.algorithm == "retrain":
        return "black", "*", 9
    if row.algorithm in CERTIFIED:
        return CERTIFIED[row.algorithm], "s", 5
    return plt.get_cmap("tab10")(empirical_index % 10), "o", 5


def plot_baselines(rows, out_base: Path, title: str) -> list:
    forget_sets = list(dict.fromkeys(r.forget_set for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    empirical = [m for m in methods if not any(r.method == m and (r.algorithm in CERTIFIED or r.algorithm == "retrain")
                                               for r in rows)]
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(forget_sets), len(PANELS), figsize=(3.3 * len(PANELS), 2.7 * len(forget_sets) + 0.9),
                                 squeeze=False, layout="constrained")
        handles = {}
        for i, forget_set in enumerate(forget_sets):
            shown = [r for r in rows if r.forget_set == forget_set]
            for j, (metric, label) in enumerate(PANELS):
                ax = axes[i][j]
                for r in shown:
                    if r.stats.get(metric) is None or r.stats.get("compute") is None:
                        continue
                    index = empirical.index(r.method) if r.method in empirical else 0
                    color, marker, size = _style(r, index)
                    (mean, ci), (x, _) = r.stats[metric], r.stats["compute"]
                    x *= 1 + JITTER * (methods.index(r.method) - len(methods) / 2) / len(methods)
                    h = ax.errorbar([x], [mean * (100 if metric != "tow" else 1)],
                                    yerr=None if ci is None else [ci * (100 if metric != "tow" else 1)],
                                    color=color, marker=marker, markersize=size, capsize=2, linestyle="none")
                    handles.setdefault(r.method, h)
                    if r.algorithm == "retrain":
                        ax.axhline(mean * (100 if metric != "tow" else 1), color="black", linewidth=0.6,
                                   linestyle=":")
                ax.set_xscale("log")
                ax.set_title(f"{label}, forget set: {forget_set}")
                ax.set_xlabel("gradient evaluations / train-split size")
                ax.set_ylabel(label + ("" if metric == "tow" else " (%)"))
                ax.grid(alpha=0.3)
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=4, frameon=False)
        fig.suptitle(f"{title}\nmean and 95% t-interval over seeds; points of equal compute spread slightly", fontsize=8)
        return _save(fig, out_base)

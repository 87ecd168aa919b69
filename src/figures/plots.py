"""Matplotlib drawing of the aggregated series: one panel per dataset, PNG and PDF."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from src.figures.aggregate import Convergence, Series  # noqa: E402

# The notebook's styles (the original code): colour and marker per method.
STYLE = {
    "retrain": ("black", "s"),
    "dp-baseline": ("tab:blue", "x"),
    "contractive_coefficients": ("tab:green", "o"),
    "iteration": ("tab:purple", "o"),
    "dp-sgd": ("tab:blue", "x"),
}
# A method shown at several epsilon levels takes shades of its colour and changes marker.
LEVEL_MARKERS = ("o", "^", "v", "D", "P", "*", "X")
SHADES = {"iteration": "Purples", "contractive_coefficients": "Greens", "dp-baseline": "Blues",
          "dp-sgd": "Blues", "retrain": "Greys"}

PANEL_TITLES = {
    "mnist": "MNIST",
    "mnist_5k": "MNIST (5k subset)",
    "cifar10": "CIFAR-10",
    "cifar10_feature": "CIFAR-10 (ResNet-18 features)",
    "cifar100_feature": "CIFAR-100 (ResNet-18 features)",
}

RC = {"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 6.5, "lines.markersize": 4}


def _axes(n: int):
    # About 3.4 in wide per panel: two panels fit a two-column paper's full width.
    # Constrained layout makes room for the legends below the axes without shrinking them.
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 0.3, 3.0), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _save(fig, out_base: Path) -> list:
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return paths


def _finish(ax, panel: str, xlabel: str):
    ax.set_title(PANEL_TITLES.get(panel, panel))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Validation Accuracy")
    ax.grid(alpha=0.3)
    # Below the axes: with several epsilon levels a legend inside would hide the curves.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.27), frameon=False)


def plot_budget(series: list, figure: int, out_base: Path, subtitle: str = "") -> list:
    """Figures 1, 3, 4: the best group's mean and 95% interval at each budget, per panel (no
    bar where one run gives no interval)."""
    panels = list(dict.fromkeys(s.panel for s in series))
    levels = sorted({s.level for s in series if 0 < s.level < np.inf})
    norm = LogNorm(min(levels), max(levels)) if figure == 4 and levels else None
    with plt.rc_context(RC):
        fig, axes = _axes(len(panels))
        for ax, panel in zip(axes, panels):
            shown = [s for s in series if s.panel == panel]
            count = Counter(s.algorithm for s in shown)
            seen = Counter()  # series drawn so far per algorithm, to tell levels apart
            for s in shown:
                color, marker = STYLE[s.algorithm]
                index, seen[s.algorithm] = seen[s.algorithm], seen[s.algorithm] + 1
                if count[s.algorithm] > 1:
                    marker = LEVEL_MARKERS[index % len(LEVEL_MARKERS)]
                    shade = 0.45 + 0.5 * index / (count[s.algorithm] - 1)
                    color = plt.get_cmap(SHADES[s.algorithm])(shade)
                if norm is not None and 0 < s.level < np.inf:
                    color = plt.cm.viridis(norm(s.level))
                x = [p.epoch for p in s.points]
                ax.errorbar(x, [p.mean for p in s.points], yerr=_bars(s.points),
                            color=color, marker=marker, capsize=2, label=s.label,
                            # The notebook joins MNIST points with dashes, CIFAR shows markers only.
                            linestyle="--" if panel.startswith("mnist") else "none",
                            linewidth=1)
            _finish(ax, panel, "Compute Budget (Epochs)")
        if subtitle:
            fig.suptitle(subtitle, fontsize=7)
        return _save(fig, out_base)


def plot_convergence(panels: list, out_base: Path, subtitle: str = "") -> list:
    """Figure 2: noisy phase (red), fine-tuning (blue), retrain (black dashed)."""
    with plt.rc_context(RC):
        fig, axes = _axes(len(panels))
        for ax, c in zip(axes, panels):
            _draw_convergence(ax, c)
            _finish(ax, c.panel, "Unlearning Progression (Epochs)")
            top = max(p.epoch for s in (c.noisy, c.finetune, c.retrain) if s for p in s.points)
            ax.set_xticks(np.arange(0, top + 1, 3))
        if subtitle:
            fig.suptitle(subtitle, fontsize=7)
        return _save(fig, out_base)


def _bars(points) -> np.ndarray:
    """Half-widths to draw; a point of one run has none (NaN), drawn without a bar."""
    return np.nan_to_num(np.array([p.ci95 for p in points], dtype=float), nan=0.0)


def _xy(s: Series):
    return (np.array([p.epoch for p in s.points]), np.array([p.mean for p in s.points]), _bars(s.points))


def _draw_convergence(ax, c: Convergence):
    both = c.noisy.points + c.finetune.points
    if both:  # the band covers noisy and fine-tuning together, as the notebook's
        x = np.array([p.epoch for p in both])
        m = np.array([p.mean for p in both])
        e = _bars(both)
        ax.fill_between(x, m - e, m + e, color="tab:blue", alpha=0.2, linewidth=0)
    x, m, _ = _xy(c.noisy)
    ax.plot(x, m, color="tab:red", label=f"Noisy phase, {c.noisy.label}")
    x, m, _ = _xy(c.finetune)
    ax.plot(x, m, color="tab:blue", label="Fine-tuning")
    if c.retrain is not None:
        x, m, e = _xy(c.retrain)
        ax.plot(x, m, color="black", linestyle="--", label=c.retrain.label)
        ax.fill_between(x, m - e, m + e, color="black", alpha=0.1, linewidth=0)
        if x.size and x[0] == 0:
            ax.plot([0], [m[0]], "x", color="tab:purple", label="Random Init")
    if c.noisy.points and c.noisy.points[0].epoch == 0:
        ax.plot([0], [c.noisy.points[0].mean], "o", color="tab:green", label="Trained Model")
    ax.axvline(c.finetune_start, color="tab:purple", linestyle="--", linewidth=1,
               label="Finetuning starts")

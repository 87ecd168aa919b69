"""Every method on two scales (issue 23): the folder table of `python -m src.audit --folder` drawn.

    python -m src.figures.audit_table --table audits/tightness-mini-mnist5k.json --out docs/figures --prefix mini_

Reads the table's numbers (`tightness-<folder>.json`, written beside the markdown table by
the audit) and writes <out>/<prefix>audit.png and .pdf: one row per method, certified methods
(a certified epsilon, retrain's 0 included) above the empirical ones (certificate none),
shaded and labelled apart. Left, on one epsilon axis: the certified epsilon, the
Clopper-Pearson lower bound (a valid bound, 95%), the Gaussian-DP estimate (an estimate under
a Gaussian assumption) and, as a grey bar, the range a bound of N chains can show (0 to its
ceiling). Right: closeness to retrain, the NeurIPS 2023 challenge's forgetting quality F and
its final score F (RA / RA_retrain) (TA / TA_retrain), both 1 at best. A number the audit did
not measure (closeness under adversarial starts) is not drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from src.figures.cli import add_output_arguments, run_figure
from src.figures.runs import FigureInputError

# What a row must hold (the audit's folder_record); None is allowed where it says "not measured".
REQUIRED = ("method", "config", "certified_epsilon", "lower_bound", "ceiling", "gaussian_estimate",
            "forgetting_quality", "challenge_score", "chains")
# Series of the epsilon panel and of the closeness panel: (row key, legend label, style).
EPSILON_SERIES = (
    ("certified_epsilon", "certified epsilon", {"marker": "|", "color": "black", "markersize": 14,
                                                "markeredgewidth": 2}),
    ("lower_bound", "Clopper-Pearson lower bound (95%)", {"marker": "o", "color": "tab:red"}),
    ("gaussian_estimate", "Gaussian-DP estimate (assumes Gaussian scores)",
     {"marker": "D", "color": "tab:blue", "markerfacecolor": "none"}),
)
CLOSENESS_SERIES = (
    ("forgetting_quality", "forgetting quality F", {"marker": "s", "color": "tab:green", "markerfacecolor": "none"}),
    ("challenge_score", "challenge score F (RA/RA_r) (TA/TA_r)", {"marker": "s", "color": "tab:purple"}),
)
CERTIFIED_SHADE = "#e8f3e8"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.figures.audit_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, help="tightness-<folder>.json written by python -m src.audit --folder")
    add_output_arguments(p)
    return p.parse_args(argv)


def read_table(path) -> dict:
    """The table's numbers; a file that is not one is a one-line error naming it."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise FigureInputError(f"--table: '{path}' cannot be read ({err.strerror or err})") from None
    except ValueError as err:
        raise FigureInputError(f"--table: '{path}' is not JSON ({err})") from None
    rows = table.get("rows") if isinstance(table, dict) else None
    if not isinstance(rows, list) or not rows:
        raise FigureInputError(f"--table: '{path}' holds no rows; expected tightness-<folder>.json written by "
                               "python -m src.audit --folder")
    for i, row in enumerate(rows):
        missing = [key for key in REQUIRED if not isinstance(row, dict) or key not in row]
        if missing:
            raise FigureInputError(f"--table: '{path}' row {i} lacks {', '.join(missing)}; expected a row of "
                                   "python -m src.audit --folder")
    return table


def certified(row: dict) -> bool:
    return row["certified_epsilon"] is not None


def ordered(rows: list[dict]) -> list[dict]:
    """Certified methods first, then the empirical ones, each in the table's order."""
    return [r for r in rows if certified(r)] + [r for r in rows if not certified(r)]


def row_labels(rows: list[dict]) -> list[str]:
    """Each row's config name without the suffix all share (the forget set and seeds: in the
    title), its algorithm and, for an empirical method, "no certificate"."""
    names = [r["config"] for r in rows]
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1] if len(names) > 1 else ""
    suffix = suffix[suffix.find("-"):] if "-" in suffix else ""
    short = [n[:len(n) - len(suffix)] if suffix and n.endswith(suffix) and len(n) > len(suffix) else n for n in names]
    return [f"{s} ({r['method']})" + ("" if certified(r) else ", no certificate")
            for s, r in zip(short, rows)], suffix.lstrip("-")


def draw(table: dict, title: str = ""):
    """The figure (not saved): y = len(rows) - 1 - i for row i of `ordered(rows)`, top to bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from src.figures.plots import RC

    rows = ordered(table["rows"])
    labels, shared = row_labels(rows)
    n = len(rows)
    y = [n - 1 - i for i in range(n)]
    with plt.rc_context(RC):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 1.2 + 0.32 * n), sharey=True,
                                          gridspec_kw={"width_ratios": [2.2, 1]}, layout="constrained")
        for ax in (left, right):
            for yi, r in zip(y, rows):
                if certified(r):
                    ax.axhspan(yi - 0.5, yi + 0.5, color=CERTIFIED_SHADE, linewidth=0, zorder=0)
            ax.grid(axis="x", alpha=0.3)
        # the range a bound of N chains can show
        for yi, r in zip(y, rows):
            left.plot([0, r["ceiling"]], [yi, yi], color="0.8", linewidth=4, solid_capstyle="butt", zorder=1,
                      label="0 to the ceiling of N chains" if yi == y[0] else None)
        for key, label, style in EPSILON_SERIES:
            shown = [(r[key], yi) for r, yi in zip(rows, y) if r[key] is not None]
            if shown:
                left.plot(*zip(*shown), linestyle="none", label=label, zorder=3, **style)
        left.set_xlim(left=-0.02 * max(max(r["ceiling"] for r in rows),
                                       max((r["gaussian_estimate"] or 0) for r in rows), 1))
        left.set_xlabel("epsilon (against the method's own reference)")
        left.set_yticks(y, labels)
        left.set_title("privacy: certified, lower bound, estimate")
        for key, label, style in CLOSENESS_SERIES:
            shown = [(r[key], yi) for r, yi in zip(rows, y) if r[key] is not None]
            if shown:
                right.plot(*zip(*shown), linestyle="none", label=label, zorder=3, **style)
        right.set_xlim(-0.03, 1.03)
        right.set_xlabel("closeness to retrain (1 = retrain)")
        right.set_title("closeness to retrain")
        for tick, r in zip(left.get_yticklabels(), rows):
            tick.set_color("darkgreen" if certified(r) else "darkorange")
        handles, names = left.get_legend_handles_labels()
        more, more_names = right.get_legend_handles_labels()
        handles += more + [Patch(color=CERTIFIED_SHADE, label="certified method (green label)")]
        names += more_names + ["certified method (green label; empirical: orange)"]
        fig.legend(handles, names, loc="outside lower center", ncol=3, frameon=False)
        chains = sorted({r["chains"] for r in rows})
        fig.suptitle(f"{title}{' ' if title else ''}({shared + ', ' if shared else ''}N = "
                     f"{', '.join(map(str, chains))} chains per world)", fontsize=8)
    return fig


def make_figure(args) -> list[Path]:
    from src.figures.plots import _save
    from src.preflight import check_output_dir

    check_output_dir(args.out, "--out")  # before any work
    table = read_table(args.table)
    fig = draw(table, "Every method on two scales")
    return _save(fig, Path(args.out) / f"{args.prefix}audit")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make_figure(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

"""Draw the paper's Figures 1-4 from local run logs.

    python -m src.figures --figure 1 --logs logs/ --out figures/ [--folder budget_curve_runs/mini-mnist5k]

Writes <out>/<prefix>figure<N>.png, .pdf and .csv (one row per plotted point: the mean over
the runs, an ensemble's members counted as runs, its 95% interval, and, for Figures 1, 3 and 4,
the paired difference to retrain of the same seeds). Problems with the input (no matching
runs, a corrupt metrics.jsonl line) print one message and exit 2.

`--figure baselines` compares certified and empirical unlearning (src/figures/baselines.py):
<out>/<prefix>baselines.png, .pdf, .csv and .md.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from src.figures import aggregate
from src.figures.cli import add_log_arguments, add_output_arguments, report_left_out, run_figure
from src.figures.runs import FigureInputError, load_runs
from src.preflight import check_output_dir

DESCRIPTIONS = {
    1: "validation accuracy vs compute budget",
    2: "convergence: noisy phase, fine-tuning, retrain",
    3: "retrain vs DP-SGD vs Gradient Clipping",
    4: "epsilon sweep of Gradient Clipping",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--figure", choices=("1", "2", "3", "4", "baselines"), required=True)
    p.add_argument("--min-runs", type=int, default=4,
                   help="smallest hyperparameter group plotted (default: 4, as the paper)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--best-so-far", dest="best_so_far", action="store_true", default=True,
                      help="running max over epochs of each run (default; the published curves)")
    view.add_argument("--raw", dest="best_so_far", action="store_false",
                      help="the accuracy logged at each epoch (Figure 2 is always raw)")
    p.add_argument("--epsilon-basis", choices=("certified", "published"), default="certified",
                   help="group and filter curves by the certified epsilon (default) or by the "
                        "epsilon the reference code prints, with the paper's filters")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="plot budgets 1, 1+K, 1+2K, ... (the paper's CIFAR panels use 3)")
    p.add_argument("--max-epoch", type=float, help="last budget (epoch) plotted")
    p.add_argument("--interval", choices=tuple(aggregate.INTERVALS), default="t",
                   help="the error bars and CSV intervals: t, the Student-t 95%% interval over the runs "
                        "(default; the tables' interval); notebook, 1.96 * population std / sqrt(n), as the "
                        "reference's notebook drew them")
    add_log_arguments(p)
    add_output_arguments(p)
    args = p.parse_args(argv)
    if args.figure != "baselines":
        args.figure = int(args.figure)
    if args.min_runs < 1 or args.every < 1:
        p.error("--min-runs and --every must be at least 1")
    return args


def _report_dropped(dropped, everything: bool = False) -> None:
    """Why runs were left out; runs of other figures only when nothing could be plotted."""
    report_left_out(dropped, lambda reason: everything or "not in Figure" not in reason)


def make_figure(args) -> list:
    """Aggregate and draw one figure; returns the written paths."""
    check_output_dir(args.out, "--out")  # before any work: a figure that cannot be written is no figure
    notes = []
    runs = load_runs(args.logs, args.folder, notes)
    for note in notes:  # runs left out or counted once, each with its file
        print(f"  warning: {note}", file=sys.stderr)
    where = f"{args.logs}" + (f" (folder {args.folder})" if args.folder else "")
    if not runs:
        raise FigureInputError(f"no finished runs in {where}: a finished run is a directory "
                               "with config.yaml, metrics.jsonl and summary.json")
    figure = args.figure
    if figure == "baselines":
        from src.figures import baselines

        title = "Certified and empirical unlearning on the same forget sets" + (f" ({args.folder})" if args.folder else "")
        return baselines.make(runs, Path(args.out) / f"{args.prefix}baselines", title)
    if figure == 2:
        panels, dropped = aggregate.convergence(runs, args.epsilon_basis, args.max_epoch, args.interval)
        series = [s for c in panels for s in (c.noisy, c.finetune, c.retrain) if s]
    else:
        series, dropped = aggregate.budget_series(
            runs, figure, args.epsilon_basis, args.min_runs, args.best_so_far, args.every,
            args.max_epoch, args.interval)
    if not series:
        spec = aggregate.FIGURES[figure]
        methods = ", ".join(aggregate.METHOD_NAMES[m] for m in spec.methods)
        datasets = ", ".join(spec.datasets) if spec.datasets else "any dataset"
        _report_dropped(dropped, everything=True)
        raise FigureInputError(
            f"none of the {len(runs)} finished runs in {where} can be plotted in Figure {figure} "
            f"(it needs {methods} on {datasets}); the reasons are listed above")
    _report_dropped(dropped)

    from src.figures import plots  # matplotlib only once there is something to draw

    out_base = Path(args.out) / f"{args.prefix}figure{figure}"
    view = "raw" if figure == 2 or not args.best_so_far else "best-so-far"
    subtitle = (f"Figure {figure}: {DESCRIPTIONS[figure]} ({view}; epsilon basis: "
                f"{args.epsilon_basis}; {aggregate.INTERVAL_NAMES[args.interval]})")
    if figure == 2:
        paths = plots.plot_convergence(panels, out_base, subtitle)
    else:
        paths = plots.plot_budget(series, figure, out_base, subtitle)
    csv_path = out_base.with_suffix(".csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=aggregate.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(aggregate.csv_rows(figure, series, args.interval))
    for s in series:
        print(f"  {s.panel}: {s.label} ({len(s.points)} points)")
    return paths + [csv_path]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make_figure(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

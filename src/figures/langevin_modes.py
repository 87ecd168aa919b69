"""The other experiments of Langevin unlearning's code, and noisy mini-batch SGD, from local runs.

    python -m src.figures.langevin_modes --logs logs --folder langevin_runs/mini-mnist5k --out figures --prefix mini_

Reads the finished runs of configs under `--folder` whose path holds one of the mode folders
that tools/make_langevin_configs.py writes, and draws one row of panels per dataset:

  utility    test accuracy after deleting S examples against S (one line per epsilon), and
             against epsilon at the fixed sigma, K varying (one line per S);
  noiseless  the ceiling: noise-free gradient descent on the data without S (drawn in the
             first panel);
  sequence   accuracy after each of many single D2D deletions, and after one Langevin
             request deleting them all;
  burnin     the learned chain's accuracy against the training steps T (one line per sigma);
  pnsgd      noisy mini-batch SGD, full-batch noisy GD with its accountant, Langevin and D2D at
             one pass over the data each, against epsilon.

Points are means over seeds, bars one standard deviation. The paper's own numbers are drawn
beside ours in orange where it ran the mode (`--published`, as src/figures/langevin.py; the
companion paper's noisy SGD numbers from `--published-pnsgd`), and a
panel says where our data are the bundled subset. Writes <out>/<prefix>langevin_modes.png, .pdf
and .csv (one row per plotted point).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from src.figures.cli import add_log_arguments, add_output_arguments, report_left_out, run_figure
from src.figures.langevin import (PUBLISHED, PUBLISHED_DATASET, PublishedSeries, Series, draw_published, label_panel,
                                  load_published, panel_grid, papers_of, save_figure)
from src.figures.runs import FigureInputError, load_runs

MODES = ("utility", "noiseless", "sequence", "burnin", "pnsgd")
PANELS = (("utility", "S"), ("utility", "epsilon"), ("sequence", "requests"), ("burnin", "T"), ("pnsgd", "epsilon"))
TITLES = {("utility", "S"): "accuracy against S deleted",
          ("utility", "epsilon"): "accuracy against epsilon (fixed sigma)",
          ("sequence", "requests"): "single D2D deletions vs one Langevin request",
          ("burnin", "T"): "learned accuracy against T (burn-in)",
          ("pnsgd", "epsilon"): "one pass over the data each"}
AXES = {("utility", "S"): ("S (examples deleted)", "test accuracy"),
        ("utility", "epsilon"): ("epsilon", "test accuracy"),
        ("sequence", "requests"): ("examples deleted", "test accuracy"),
        ("burnin", "T"): ("training steps T", "test accuracy"),
        ("pnsgd", "epsilon"): ("epsilon", "test accuracy")}
RELEVANT = ('"request"', '"Test (Learned)_accuracy"')
# The companion paper's own results for noisy mini-batch SGD (one deletion, K = 1 epoch).
PNSGD_PUBLISHED = PUBLISHED.with_name("pnsgd_published.json")


def mode_of(config_file: str) -> str | None:
    parts = Path(config_file).parts
    return next((m for m in MODES if m in parts), None)


def read_rows(path: Path) -> tuple[list, float | None]:
    requests, learned = [], None
    with open(path / "metrics.jsonl", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not any(key in line for key in RELEVANT):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise FigureInputError(f"{path / 'metrics.jsonl'}, line {number}: not valid JSON ({err.msg})") from None
            if "request" in row:
                requests.append(row)
            learned = row.get("Test (Learned)_accuracy", learned)
    return requests, learned


def aggregate(logs, folder=None) -> tuple[dict, dict]:
    """{(mode, dataset, panel): {label: Series}}, and the runs left out by reason."""
    out: dict = defaultdict(dict)
    dropped: dict = defaultdict(int)

    def series(mode, dataset, panel, label):
        return out[(mode, dataset, panel)].setdefault(label, Series(mode, dataset, label))

    for run in load_runs(logs, folder):
        mode = mode_of(str(run.summary.get("config_file", "")))
        if mode is None:
            dropped["config not under a utility/, noiseless/, sequence/, burnin/ or pnsgd/ folder"] += 1
            continue
        config, d = run.config, run.dataset
        if mode == "noiseless":
            S = (run.summary.get("plan", {}).get("split_sizes") or {}).get("forget")
            series("utility", d, "S", "noise-free retraining (ceiling)").add(S, run.summary.get("test_accuracy"))
            continue
        requests, learned = read_rows(run.path)
        if not requests:
            dropped["no request rows in metrics.jsonl"] += 1
            continue
        last = requests[-1]
        algorithm = config["unlearning"]["algorithm"]
        section = config["unlearning"][algorithm]
        if mode == "utility":
            eps, S = float(section["epsilon_target"]), last["request_size"]
            series("utility", d, "S", f"Langevin, epsilon {eps:g}").add(S, last["Test (Request)_accuracy"])
            series("utility", d, "epsilon", f"Langevin, S = {S}").add(eps, last["Test (Request)_accuracy"])
        elif mode == "sequence":
            if algorithm == "d2d":
                deleted = 0
                for row in requests:
                    deleted += row["request_size"]
                    series("sequence", d, "requests", "D2D, one example per request").add(
                        deleted, row["Test (Request)_accuracy"])
            else:
                series("sequence", d, "requests", "Langevin, one request").add(last["request_size"],
                                                                               last["Test (Request)_accuracy"])
        elif mode == "burnin":
            sigma = float(config["training"]["langevin"]["sigma"])
            series("burnin", d, "T", f"sigma {sigma:g}").add(int(config["training"]["epochs"]), learned)
        else:
            eps = float(section["epsilon_target"])
            if algorithm == "pnsgd":
                b, n = int(config["dataset"]["batch_size"]), run.summary.get("plan", {}).get("pnsgd_n")
                label = "noisy SGD, b = n" if n is not None and b >= n else f"noisy SGD, b = {b}"
            else:
                label = {"langevin": "Langevin, K = 1", "d2d": "D2D, I = 1"}[algorithm]
            series("pnsgd", d, "epsilon", label).add(eps, last["Test (Request)_accuracy"])
    return out, dict(dropped)


def published_groups(published: dict, datasets) -> dict:
    out: dict = defaultdict(dict)
    for paper, series in papers_of(published, datasets, out):
        for eps, cells in paper.get("utility_s", {}).items():
            for S, st in cells["lmc_unlearn"].items():
                series("utility", "S", f"Langevin, epsilon {eps}").put(S, st["mean"], st["std"], st["n"])
        for S, st in paper.get("retrain_noiseless", {}).items():
            series("utility", "S", "noise-free retraining").put(S, st["mean"], st["std"], st["n"])
        for S, cells in paper.get("utility_epsilon", {}).items():
            for eps, st in cells["lmc_unlearn"].items():
                series("utility", "epsilon", f"Langevin, S = {S}").put(eps, st["mean"], st["std"], st["n"])
        for i, st in paper.get("fig3b", {}).get("d2d_accuracy", {}).get("1", {}).items():
            series("sequence", "requests", "D2D, one example per request").put(int(i), st["mean"], st["std"], st["n"])
    return out


def pnsgd_published_groups(published: dict, datasets) -> dict:
    out: dict = defaultdict(dict)
    for dataset in datasets:
        paper = published.get(PUBLISHED_DATASET.get(dataset, ""))
        for batch, cells in (paper or {}).items():
            label = "noisy SGD, b = n" if batch == "full" else f"noisy SGD, b = {batch}"
            s = out[("pnsgd", dataset, "epsilon")].setdefault(label, PublishedSeries("pnsgd", dataset,
                                                                                    f"published: {label}"))
            for eps, st in cells.items():
                s.put(eps, st["mean"], st["std"], st["n"])
    return out


def draw(groups: dict, paper: dict, out_base: Path, subtitle: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, cells = panel_grid(plt, groups, PANELS, TITLES)
    with plt.rc_context({"font.size": 7}):
        for ax, dataset, (mode, panel), ours in cells:
            shades = iter(np.linspace(0.4, 0.95, max(len(ours), 2)))
            for label, s in ours.items():
                if not s.points:  # a run that logged no value for this series
                    continue
                xs, means, stds, _ = zip(*s.rows())
                ax.errorbar(xs, means, yerr=stds, marker="o", markersize=3, capsize=2, linewidth=1, label=label,
                            linestyle="--" if "ceiling" in label else "-",
                            color="black" if "ceiling" in label else plt.get_cmap("viridis")(next(shades)))
            theirs = paper.get((mode, dataset, panel), {})
            draw_published(ax, plt, theirs, dataset, 0.45)
            if panel in ("S", "epsilon") or mode == "burnin":
                ax.set_xscale("log")
            label_panel(ax, dataset, TITLES[(mode, panel)], AXES[(mode, panel)], 5)
        fig.suptitle(subtitle, fontsize=7)
        paths = save_figure(fig, out_base)
    plt.close(fig)
    return paths


def write_csv(groups: dict, paper: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("mode", "dataset", "series", "x", "mean", "std", "runs"))
        for key in sorted(set(groups) | set(paper)):
            mode, dataset, panel = key
            for s in (*groups.get(key, {}).values(), *paper.get(key, {}).values()):
                for x, mean, std, n in s.rows():
                    writer.writerow([f"{mode}-{panel}", dataset, s.label, f"{x:g}", f"{mean:.6g}", f"{std:.6g}", n])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.figures.langevin_modes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--published", default=str(PUBLISHED), help="the paper's numbers ('none' leaves them out)")
    p.add_argument("--published-pnsgd", default=str(PNSGD_PUBLISHED),
                   help="the companion paper's noisy mini-batch SGD numbers ('none' leaves them out)")
    add_log_arguments(p)
    add_output_arguments(p)
    return p.parse_args(argv)


def make_figure(args) -> list[Path]:
    groups, dropped = aggregate(args.logs, args.folder)
    report_left_out(dropped)
    if not groups:
        where = args.logs + (f" (folder {args.folder})" if args.folder else "")
        raise FigureInputError(f"no finished runs from utility/, noiseless/, sequence/, burnin/ or pnsgd/ configs in "
                               f"{where}")
    paper = {}
    if args.published != "none":
        paper = published_groups(load_published(args.published), {d for (_, d, _) in groups})
    if args.published_pnsgd != "none":
        paper.update(pnsgd_published_groups(load_published(args.published_pnsgd), {d for (_, d, _) in groups}))
    out_base = Path(args.out) / f"{args.prefix}langevin_modes"
    runs = sum(len(v) for s in groups.values() for series in s.values() for v in series.points.values())
    paths = draw(groups, paper, out_base, f"Langevin unlearning, the original's other modes and noisy mini-batch SGD "
                 f"({runs} run results; mean +- 1 std over seeds; orange: the paper's published numbers)")
    write_csv(groups, paper, out_base.with_suffix(".csv"))
    return [*paths, out_base.with_suffix(".csv")]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make_figure(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

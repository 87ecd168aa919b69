"""Figure 3 of Langevin unlearning (Chien et al., NeurIPS 2024) from local run logs.

    python -m src.figures.langevin --logs logs --folder langevin_runs/mini-mnist5k --out figures --prefix mini_

Reads the finished runs of configs under `--folder` whose path holds fig3a/, fig3b/ or fig3c/
(langevin_runs/ and tools/make_langevin_configs.py) and draws one row of panels per dataset:

  3a  test accuracy after one deletion against epsilon: Langevin unlearning (K = 1), the
      Langevin retraining it is certified against, the learned chain, and D2D with I steps;
  3b  sequential deletions: cumulative unlearning steps, and accuracy after each request;
  3c  K against sigma at epsilon 1 (the accountant's curve, the runs as markers), and the
      accuracy of the unlearned, retrained and learned chains.

Points are the mean over runs (seeds), bars one standard deviation. Beside them, in orange
and dotted, the paper's own numbers ("published": the arrays its figures were drawn from,
tests/data/langevin_published.json, 100 chains each; `--published none` leaves them out);
where our runs use the bundled subset the panel says so. Writes
<out>/<prefix>langevin_figure3.png, .pdf and .csv (one row per plotted point).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.figures.cli import add_log_arguments, add_output_arguments, report_left_out, run_figure
from src.figures.runs import FigureInputError, is_number, load_runs

FIGURES = ("fig3a", "fig3b", "fig3c")
PUBLISHED = Path(__file__).resolve().parents[2] / "tests" / "data" / "langevin_published.json"
# Our dataset -> the paper's stored results for the same task.
PUBLISHED_DATASET = {"mnist_3v8": "MNIST", "mnist_5k_3v8": "MNIST", "cifar10_feature_3v8": "CIFAR10",
                     "cifar10_feature_unit": "CIFAR10_MULTI"}
SUBSET_NOTE = {"mnist_5k_3v8": "ours: bundled 5k subset, n = 720;\npublished: full MNIST 3 vs 8, n = 11,982"}
# Only these lines of metrics.jsonl matter here (the rest are per-step rows).
RELEVANT = ('"request"', '"Test (Learned)_accuracy"', '"Test (Langevin Retrain)_accuracy"')
CSV_COLUMNS = ("figure", "dataset", "series", "x", "mean", "std", "runs")


@dataclass
class LangevinRun:
    figure: str
    dataset: str
    algorithm: str
    config: dict
    summary: dict
    requests: list = field(default_factory=list)  # the per-request rows, in order
    learned: float | None = None
    retrained: float | None = None

    def section(self) -> dict:
        return self.config["unlearning"][self.algorithm]


def figure_of(config_file: str) -> str | None:
    parts = Path(config_file).parts
    return next((f for f in FIGURES if f in parts), None)


def read_langevin_rows(run) -> tuple[list, float | None, float | None]:
    requests, learned, retrained = [], None, None
    path = run.path / "metrics.jsonl"
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = list(handle)
    except OSError as err:  # EIO, permissions, missing: one line naming the file
        raise FigureInputError(f"{path}: cannot be read ({err.strerror or err})") from None
    for number, line in enumerate(lines, start=1):
        if not any(key in line for key in RELEVANT):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FigureInputError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise FigureInputError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        if "request" in row:
            requests.append(row)
        learned = row.get("Test (Learned)_accuracy", learned)
        retrained = row.get("Test (Langevin Retrain)_accuracy", retrained)
    return requests, learned, retrained


# What each figure reads of a run's request rows (metrics.jsonl) and its method's section.
ROW_KEYS = {"fig3a": ("Test (Request)_accuracy",), "fig3b": ("request_size", "state_step", "Test (Request)_accuracy"),
            "fig3c": ("Test (Request)_accuracy",)}


def check_langevin_run(run, figure: str, requests: list) -> None:
    """Everything the figure reads of a run, checked before anything is drawn: a run without
    its method's section or without request accuracies is one line naming its files."""
    unlearning = run.config.get("unlearning")
    section = unlearning.get(run.algorithm) if isinstance(unlearning, dict) else None
    if not isinstance(section, dict):
        raise FigureInputError(f"{run.path}/config.yaml: no unlearning.{run.algorithm} section; rerun it")
    needed = {"fig3a": ["epsilon_target"] + (["steps"] if run.algorithm == "d2d" else [])}.get(figure, [])
    for key in needed:
        if not is_number(section.get(key)):
            raise FigureInputError(f"{run.path}/config.yaml: unlearning.{run.algorithm} has no number under "
                                   f"'{key}'; rerun it")
    if figure == "fig3c":
        langevin = (run.config.get("training") or {}).get("langevin")
        if not (isinstance(langevin, dict) and is_number(langevin.get("sigma"))):
            raise FigureInputError(f"{run.path}/config.yaml: no number under training.langevin.sigma; rerun it")
    keys = ROW_KEYS[figure] + (("request_steps",) if figure == "fig3a" and run.algorithm == "langevin" else ())
    for row in (requests if figure == "fig3b" else requests[-1:]):
        for key in keys:
            if not is_number(row.get(key)):
                raise FigureInputError(f"{run.path}/metrics.jsonl: request {row.get('request')} has no number under "
                                       f"'{key}'; rerun it")


def load_langevin_runs(logs, folder=None) -> tuple[list[LangevinRun], dict]:
    runs, dropped = [], defaultdict(int)
    for run in load_runs(logs, folder):
        figure = figure_of(str(run.summary.get("config_file", "")))
        if run.algorithm not in ("langevin", "d2d"):
            dropped["not a Langevin or D2D run"] += 1
            continue
        if figure is None:
            dropped["config not under a fig3a/, fig3b/ or fig3c/ folder"] += 1
            continue
        requests, learned, retrained = read_langevin_rows(run)
        if not requests:
            dropped["no request rows in metrics.jsonl"] += 1
            continue
        check_langevin_run(run, figure, requests)
        runs.append(LangevinRun(figure, run.dataset, run.algorithm, run.config, run.summary, requests, learned,
                                retrained))
    return runs, dict(dropped)


# ---------------------------------------------------------------------------------------
# Aggregation: series of (x, values over runs)


@dataclass
class Series:
    figure: str
    dataset: str
    label: str
    points: dict = field(default_factory=lambda: defaultdict(list))  # x -> values

    def add(self, x, value):
        if is_number(value) and math.isfinite(value):  # a missing or non-numeric value is no point
            self.points[x].append(value)

    def rows(self):
        for x in sorted(self.points):
            values = np.asarray(self.points[x], dtype=float)
            yield x, float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


@dataclass
class PublishedSeries(Series):
    """The paper's numbers: (mean, std, chains) per x, as stored."""

    stats: dict = field(default_factory=dict)  # x -> (mean, std, n)

    def put(self, x, mean, std=0.0, n=1):
        self.stats[float(x)] = (float(mean), float(std), int(n))
        self.points[float(x)] = [float(mean)]

    def rows(self):
        for x in sorted(self.stats):
            yield (x, *self.stats[x])


def load_published(path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["datasets"]
    except (OSError, ValueError, KeyError) as err:
        raise FigureInputError(f"--published {path}: cannot read the paper's numbers ({err})") from None


def papers_of(published: dict, datasets, out: dict):
    """For each of our datasets that the paper ran: its published numbers and series(figure,
    panel, label), the PublishedSeries of out[(figure, dataset, panel)][label], made once."""
    for dataset in datasets:
        paper = published.get(PUBLISHED_DATASET.get(dataset, ""))
        if not paper:
            continue

        def series(figure, panel, label, dataset=dataset):
            return out[(figure, dataset, panel)].setdefault(label, PublishedSeries(figure, dataset,
                                                                                   f"published: {label}"))

        yield paper, series


def published_groups(published: dict, datasets) -> dict:
    """{(figure, dataset, panel): {label: PublishedSeries}} for our datasets that the paper ran."""
    out: dict = defaultdict(dict)
    for paper, series in papers_of(published, datasets, out):
        a = paper.get("fig3a", {})
        for eps, st in a.get("lmc_unlearn", {}).items():
            series("fig3a", "accuracy", "Langevin (K=1)").put(eps, st["mean"], st["std"], st["n"])
        for steps, cells in sorted(a.get("d2d", {}).items()):
            if steps in ("1", "5"):
                for eps, st in cells.items():
                    series("fig3a", "accuracy", f"D2D (I={steps})").put(eps, st["mean"], st["std"], st["n"])
        b = paper.get("fig3b", {})
        for nr, ks in b.get("lmc_k_lists", {}).items():
            # k_list[0] is 0; k_list[s] is the K of request s (requests of nr replaced examples)
            for s, total in enumerate(np.cumsum(ks[1:]), start=1):
                series("fig3b", "steps", f"Langevin, {nr} per request").put(s * int(nr), total)
        for nr, cells in b.get("lmc_accuracy", {}).items():
            for i, st in enumerate(cells):  # stage i ran on (i + 1) nr replaced examples
                if (i + 1) * int(nr) <= 100:
                    series("fig3b", "accuracy", f"Langevin, {nr} per request").put((i + 1) * int(nr), st["mean"],
                                                                                  st["std"], st["n"])
        if "1" in b.get("d2d_steps", {}):
            for i, total in enumerate(np.cumsum(b["d2d_steps"]["1"]), start=1):
                series("fig3b", "steps", "D2D, f=1").put(i, total)
        for i, st in b.get("d2d_accuracy", {}).get("1", {}).items():
            series("fig3b", "accuracy", "D2D, f=1").put(int(i), st["mean"], st["std"], st["n"])
        c = paper.get("fig3c", {})
        for sigma, K in c.get("K", {}).items():
            series("fig3c", "steps", "K").put(sigma, K)
        for sigma, st in c.get("lmc_unlearn", {}).items():
            series("fig3c", "accuracy", "Langevin unlearning").put(sigma, st["mean"], st["std"], st["n"])
    return out


def aggregate(runs: list[LangevinRun]) -> dict:
    """{(figure, dataset, panel): {label: Series}}."""
    out: dict = defaultdict(dict)

    def series(figure, dataset, panel, label):
        return out[(figure, dataset, panel)].setdefault(label, Series(figure, dataset, label))

    for run in runs:
        f, d, sec = run.figure, run.dataset, run.section()
        last = run.requests[-1]
        if f == "fig3a":
            eps = float(sec["epsilon_target"])
            if run.algorithm == "langevin":
                steps = last["request_steps"]
                series(f, d, "accuracy", f"Langevin unlearning (K={steps})").add(eps, last["Test (Request)_accuracy"])
                series(f, d, "accuracy", "Langevin retraining").add(eps, run.retrained)
                series(f, d, "accuracy", "Langevin learning").add(eps, run.learned)
            else:
                series(f, d, "accuracy", f"D2D (I={sec['steps']})").add(eps, last["Test (Request)_accuracy"])
        elif f == "fig3b":
            label = (f"Langevin, {run.requests[0]['request_size']} per request" if run.algorithm == "langevin"
                     else f"D2D, f={sec.get('step_factor', 1):g}")
            deleted = 0
            for row in run.requests:
                deleted += row["request_size"]
                series(f, d, "steps", label).add(deleted, row["state_step"])
                series(f, d, "accuracy", label).add(deleted, row["Test (Request)_accuracy"])
        else:
            sigma = float(run.config["training"]["langevin"]["sigma"])
            series(f, d, "steps", "runs").add(sigma, run.summary.get("noisy_steps"))
            series(f, d, "accuracy", "Langevin unlearning").add(sigma, last["Test (Request)_accuracy"])
            series(f, d, "accuracy", "Langevin retraining").add(sigma, run.retrained)
            series(f, d, "accuracy", "Langevin learning").add(sigma, run.learned)
    return out


def accountant_curve(run: LangevinRun, sigmas) -> list[int]:
    """K against sigma for the constants of `run` (its plan), by the accountant itself."""
    from src.privacy.langevin import Chain, smallest_steps

    plan, sec = run.summary["plan"], run.section()
    S = plan["requests"][0]["size"]
    out = []
    for sigma in sigmas:
        chain = Chain(n=plan["langevin_n"], m=plan["langevin_m"], eta=plan["langevin_eta"], M=plan["langevin_M"],
                      sigma=float(sigma))
        out.append(smallest_steps(float(sec["epsilon_target"]), S, chain, plan["certified_delta"],
                                  alpha_range=tuple(sec.get("alpha_range", (1.0001, 1e5))),
                                  conversion=sec.get("conversion", "mironov"), min_steps=sec.get("min_steps", 1),
                                  step_lattice=sec.get("step_lattice", 1)).steps)
    return out


# ---------------------------------------------------------------------------------------
# Drawing

PANELS = (("fig3a", "accuracy"), ("fig3b", "steps"), ("fig3b", "accuracy"), ("fig3c", "steps"), ("fig3c", "accuracy"))
TITLES = {("fig3a", "accuracy"): "3a: one deletion", ("fig3b", "steps"): "3b: steps, sequential",
          ("fig3b", "accuracy"): "3b: accuracy, sequential", ("fig3c", "steps"): "3c: K against sigma",
          ("fig3c", "accuracy"): "3c: accuracy against sigma"}
AXES = {("fig3a", "accuracy"): ("epsilon", "test accuracy"),
        ("fig3b", "steps"): ("examples deleted", "cumulative unlearning steps"),
        ("fig3b", "accuracy"): ("examples deleted", "test accuracy after the request"),
        ("fig3c", "steps"): ("sigma", "K (epsilon = 1)"), ("fig3c", "accuracy"): ("sigma", "test accuracy")}
DATASET_TITLES = {"mnist_3v8": "MNIST 3 vs 8", "mnist_5k_3v8": "MNIST-5k 3 vs 8",
                  "mnist_5k_unit": "MNIST-5k, 10 classes", "cifar10_feature_3v8": "CIFAR-10 cat vs ship (features)",
                  "cifar10_feature_unit": "CIFAR-10, 10 classes (features)"}


def colour(label: str, shade: float):
    """One colour family per method, so a method looks the same in every panel."""
    import matplotlib.pyplot as plt

    for prefix, fixed in (("Langevin unlearning", "tab:green"), ("Langevin retraining", "black"),
                          ("Langevin learning", "tab:gray")):
        if label.startswith(prefix):
            return fixed
    return plt.get_cmap("Blues" if label.startswith("D2D") else "Greens")(shade)


def draw(groups: dict, runs: list[LangevinRun], out_base: Path, subtitle: str, published: dict | None = None
         ) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    published = published or {}
    fig, cells = panel_grid(plt, groups, PANELS, TITLES)
    with plt.rc_context({"font.size": 7}):
        for ax, dataset, (figure, panel), found in cells:
            shades = iter(np.linspace(0.45, 0.95, max(len(found), 2)))
            for label, s in found.items():
                if not s.points:  # e.g. no learned-chain row logged: nothing to draw
                    continue
                xs, means, stds, _ = zip(*s.rows())
                if figure == "fig3c" and panel == "steps":
                    ax.plot(xs, means, "o", color="black", label="runs", zorder=3)
                    continue
                style = "--" if label.startswith(("Langevin retraining", "Langevin learning")) else "-"
                ax.errorbar(xs, means, yerr=stds, marker="o", markersize=3, capsize=2, linestyle=style,
                            linewidth=1, label=label, color=colour(label, next(shades)))
            if figure == "fig3c" and panel == "steps":
                example = next(r for r in runs if r.figure == "fig3c" and r.dataset == dataset)
                xs = sorted(found["runs"].points)
                grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 60)
                ax.plot(grid, accountant_curve(example, grid), color="tab:purple", linewidth=1,
                        label="accountant")
            paper = published.get((figure, dataset, panel), {})
            draw_published(ax, plt, paper, dataset, 0.5, va="bottom")
            if figure in ("fig3a", "fig3c"):
                ax.set_xscale("log")
                ticks = sorted({x for s in (*found.values(), *paper.values()) for x in s.points})
                ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            label_panel(ax, dataset, TITLES[(figure, panel)], AXES[(figure, panel)], 5.5)
        fig.suptitle(subtitle, fontsize=7)
        paths = save_figure(fig, out_base)
    plt.close(fig)
    return paths


# What both Langevin figures (this one and langevin_modes.py) draw alike.
def panel_grid(plt, groups: dict, panels, titles: dict):
    """One row per dataset, one column per panel: the figure, and an iterator over its
    panels that have runs, as (ax, dataset, (figure or mode, panel), series); a panel
    without runs is switched off and says so. Iterate inside the figure's rc_context."""
    datasets = sorted({d for (_, d, _) in groups})
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(3.1 * len(panels), 2.9 * len(datasets)),
                             squeeze=False, layout="constrained")

    def cells():
        for row, dataset in enumerate(datasets):
            for col, key in enumerate(panels):
                ax = axes[row][col]
                found = groups.get((key[0], dataset, key[1]), {})
                if not found:
                    ax.set_axis_off()
                    ax.set_title(f"{titles[key]}: no runs", fontsize=7)
                    continue
                yield ax, dataset, key, found

    return fig, cells()


def draw_published(ax, plt, paper: dict, dataset: str, first_shade: float, **note) -> None:
    """The paper's series on `ax` (orange crosses, dotted), and the note when our data are a subset."""
    paper_shades = iter(np.linspace(first_shade, 0.95, max(len(paper), 2)))
    for label, s in paper.items():
        xs, means, stds, _ = zip(*s.rows())
        ax.errorbar(xs, means, yerr=stds, marker="x", markersize=3, capsize=1.5, linestyle=":",
                    linewidth=0.9, label=s.label, color=plt.get_cmap("Oranges")(next(paper_shades)))
    if paper and dataset in SUBSET_NOTE:
        ax.text(0.02, 0.02, SUBSET_NOTE[dataset], transform=ax.transAxes, fontsize=5, color="tab:orange", **note)


def label_panel(ax, dataset: str, title: str, axes: tuple[str, str], legend_size: float) -> None:
    xlabel, ylabel = axes
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(f"{DATASET_TITLES.get(dataset, dataset)}\n{title}", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, frameon=False)


def save_figure(fig, out_base: Path) -> list[Path]:
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=180)
    return paths


def write_csv(groups: dict, path: Path, published: dict | None = None) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for key in sorted(set(groups) | set(published or {})):
            figure, dataset, panel = key
            for s in (*groups.get(key, {}).values(), *(published or {}).get(key, {}).values()):
                label = s.label
                for x, mean, std, n in s.rows():
                    writer.writerow([f"{figure}-{panel}", dataset, label, f"{x:g}", f"{mean:.6g}", f"{std:.6g}", n])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.figures.langevin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--published", default=str(PUBLISHED),
                   help="the paper's numbers to draw beside ours (default: the repository's "
                        "tests/data/langevin_published.json); 'none' leaves them out")
    add_log_arguments(p)
    add_output_arguments(p)
    return p.parse_args(argv)


def make_figure(args) -> list[Path]:
    runs, dropped = load_langevin_runs(args.logs, args.folder)
    report_left_out(dropped)
    if not runs:
        where = args.logs + (f" (folder {args.folder})" if args.folder else "")
        raise FigureInputError(f"no finished Langevin or D2D runs from fig3a/, fig3b/ or fig3c/ configs in {where}")
    groups = aggregate(runs)
    paper = {}
    if args.published != "none":
        paper = published_groups(load_published(args.published), {d for (_, d, _) in groups})
    out_base = Path(args.out) / f"{args.prefix}langevin_figure3"
    paths = draw(groups, runs, out_base, f"Langevin unlearning, Figure 3 ({len(runs)} runs; mean +- 1 std over seeds; "
                 "orange: the paper's published numbers, 100 chains)", paper)
    write_csv(groups, out_base.with_suffix(".csv"), paper)
    return [*paths, out_base.with_suffix(".csv")]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make_figure(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

"""Deletion requests over time (docs/requests.md): test accuracy and cumulative compute
against the number of requests processed, certified methods against retraining from
scratch after every request, and the compute each needs for the same accuracy.

    python -m src.figures.request_stream --logs logs --folder request_stream_runs/mini-mnist5k --out docs/figures

Reads the per-request records in summary.json of finished stream runs (config `requests:`)
and groups the runs by method, certified epsilon and budget per request (one group per
curve, its seeds averaged; each member of a `seeds: N` ensemble is a seed, with its own
stream of deployed models, docs/ensembles.md). Writes <out>/<prefix>request_stream.png, .pdf
and .csv (one row per group and request), and <prefix>request_stream_savings.csv and .md: for
every certified group, the compute retraining needs for the same accuracy, by linear
interpolation between the retrain budgets that were run. Compute is counted in gradient
steps (noisy and fine-tuning steps alike; every step is one batch), pretraining excluded (the
deployed model exists before the first request either way). Accuracy is the deployed
models' test accuracy, averaged over the requests of the stream ("stream accuracy"), and
after the last request ("final accuracy").

Every accuracy is a mean over the seeds with its Student-t 95% interval (half-width `*_ci95`,
ends `*_low` / `*_high`). The savings table also gives, for each certified group, the
difference to retraining at the same budget per request (the same compute) paired over the
seeds both ran (same dataset.seed and global_seed: the same pretrained model and forget
set), and an interval for the compute saved that takes both spreads at their worst (the
method's accuracy at the low end of its interval against retraining's curve at the high
ends of its intervals, and the other way round).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.evaluation.paired import paired_difference
from src.figures.aggregate import METHOD_NAMES, blank_cell, mean_t, seed_of
from src.figures.cli import add_log_arguments, add_output_arguments, run_figure
from src.figures.runs import FigureInputError, Run, is_number, load_runs

RETRAIN = "retrain"
CSV_COLUMNS = ("method", "epsilon", "epochs_per_request", "request", "n_runs", "test_accuracy", "ci95",
               "cumulative_epochs", "cumulative_steps", "cumulative_seconds", "all_models_epsilon", "low", "high")
SAVINGS_COLUMNS = ("method", "epsilon", "epochs_per_request", "n_runs", "stream_accuracy", "final_accuracy",
                   "cumulative_steps", "retrain_steps_same_accuracy", "retrain_bound", "compute_saved",
                   "retrain_steps_same_final_accuracy", "final_bound", "compute_saved_final",
                   "stream_accuracy_ci95", "stream_accuracy_low", "stream_accuracy_high",
                   "final_accuracy_ci95", "final_accuracy_low", "final_accuracy_high",
                   "compute_saved_low", "compute_saved_high", "compute_saved_final_low", "compute_saved_final_high",
                   "vs_retrain_pairs", "stream_vs_retrain", "stream_vs_retrain_ci95",
                   "final_vs_retrain", "final_vs_retrain_ci95")


@dataclass
class Group:
    algorithm: str
    epsilon: float  # the certified epsilon of each request (0 for retrain)
    epochs: int  # budget per request
    runs: list = field(default_factory=list)

    @property
    def label(self) -> str:
        name = METHOD_NAMES.get(self.algorithm, self.algorithm)
        eps = "" if self.algorithm == RETRAIN else f" (eps {self.epsilon:.3g})"
        return f"{name}{eps}, {self.epochs} ep/request"

    def records(self) -> list[list[dict]]:
        return [run.summary["requests"] for run in self.runs]

    def per_request(self, key: str) -> np.ndarray:
        """[n_runs, k] of one record value."""
        return np.array([[float(r[key]) for r in records] for records in self.records()])

    @property
    def num_requests(self) -> int:
        return len(self.runs[0].summary["requests"])

    def stream_accuracies(self) -> np.ndarray:
        """Per run: the test accuracy averaged over its requests."""
        return self.per_request("test_accuracy").mean(axis=1)

    def final_accuracies(self) -> np.ndarray:
        """Per run: the test accuracy after its last request."""
        return self.per_request("test_accuracy")[:, -1]

    def stream_accuracy(self) -> float:
        return float(self.stream_accuracies().mean())

    def final_accuracy(self) -> float:
        return float(self.final_accuracies().mean())

    def total_steps(self) -> float:
        return float(self.per_request("cumulative_steps")[:, -1].mean())


def stream_runs(runs: list[Run]) -> tuple[list[Run], int]:
    """Finished runs of deletion-request streams; the count of other runs left out."""
    kept = [r for r in runs if r.config.get("requests") and isinstance(r.summary.get("requests"), list)
            and r.summary["requests"]]
    # Every value the figure and both tables read, checked before anything is drawn or written.
    for run in kept:
        for number, record in enumerate(run.summary["requests"], start=1):
            if not isinstance(record, dict):
                raise FigureInputError(f"{run.path}/summary.json: request record {number} is "
                                       f"{type(record).__name__}, not an object; rerun it")
            for key in ("request", "test_accuracy", "epochs", "cumulative_steps", "cumulative_epochs",
                        "cumulative_seconds"):
                if not is_number(record.get(key)):
                    raise FigureInputError(f"{run.path}/summary.json: request record {record.get('request')} has no "
                                           f"number under '{key}'; rerun it")
    return kept, len(runs) - len(kept)


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        first = run.summary["requests"][0]
        epsilon = first.get("certified_epsilon")
        epsilon = 0.0 if run.algorithm == RETRAIN else (float(epsilon) if is_number(epsilon) else math.inf)
        key = (run.algorithm, epsilon, int(first["epochs"]), len(run.summary["requests"]))
        groups.setdefault(key, Group(run.algorithm, epsilon, int(first["epochs"]))).runs.append(run)
    order = list(METHOD_NAMES)
    return sorted(groups.values(), key=lambda g: (order.index(g.algorithm) if g.algorithm in order else len(order),
                                                   g.epsilon, g.epochs, g.num_requests))


def csv_rows(groups: list[Group]) -> list[dict]:
    rows = []
    for g in groups:
        accuracy = g.per_request("test_accuracy")
        for i in range(g.num_requests):
            mean, ci = mean_t(accuracy[:, i])
            composed = [r[i].get("all_models_epsilon") for r in g.records()]
            rows.append({
                "method": METHOD_NAMES.get(g.algorithm, g.algorithm), "epsilon": g.epsilon,
                "epochs_per_request": g.epochs, "request": i + 1, "n_runs": len(g.runs), "test_accuracy": mean,
                "ci95": blank_cell(ci), "cumulative_epochs": float(g.per_request("cumulative_epochs")[:, i].mean()),
                "cumulative_steps": float(g.per_request("cumulative_steps")[:, i].mean()),
                "cumulative_seconds": float(g.per_request("cumulative_seconds")[:, i].mean()),
                "all_models_epsilon": max((c for c in composed if is_number(c)), default=None),
                "low": blank_cell(mean - ci), "high": blank_cell(mean + ci)})
    return rows


def paired_with_retrain(g: Group, retrain: list[Group], per_run) -> tuple[float, float, int] | None:
    """`per_run(group)` of g's runs minus that of the retrain runs of the same seeds at the
    same budget per request (the same compute): (mean, Student-t half-width, pairs)."""
    same = next((r for r in retrain if r.epochs == g.epochs and r.num_requests == g.num_requests), None)
    if same is None:
        return None
    reference = dict(zip((seed_of(run) for run in same.runs), per_run(same)))
    d = paired_difference(dict(zip((seed_of(run) for run in g.runs), per_run(g))), reference)
    return None if d is None else (d.mean, math.nan if d.ci95 is None else d.ci95, d.n)


def retrain_steps_for(accuracy: float, retrain: list[Group], measure=Group.stream_accuracy) -> tuple[float | None, str]:
    """Gradient steps retraining after every request needs for an accuracy of `accuracy`
    (`measure`: stream or final accuracy): linear interpolation between the retrain budgets
    run (sorted by compute), at the first budget that reaches it. Outside their range only
    a bound is known: ('>', most steps run) when no budget reaches it, ('<', fewest) when
    all exceed it."""
    points = sorted((g.total_steps(), measure(g)) for g in retrain)
    if not points:
        return None, "no retrain runs"
    if accuracy <= points[0][1]:
        return points[0][0], "=" if accuracy == points[0][1] else "<"
    for (c0, a0), (c1, a1) in zip(points, points[1:]):
        if a0 < accuracy <= a1:
            return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0), "="
    return points[-1][0], ">"


def saved_at(steps: float, accuracy: float, retrain: list[Group], measure) -> tuple[float | None, str]:
    """Compute saved against retraining at `accuracy`, and retrain_steps_for's bound sign."""
    if math.isnan(accuracy):
        return None, ""
    needed, bound = retrain_steps_for(accuracy, retrain, measure)
    return (None, bound) if needed is None else (1.0 - steps / needed, bound)


MEASURES = {"stream": (Group.stream_accuracies, Group.stream_accuracy, "compute_saved"),
            "final": (Group.final_accuracies, Group.final_accuracy, "compute_saved_final")}


def interval_end(per_run, side: int):
    """A group's accuracy at one end of its Student-t interval (side -1: low, +1: high; the
    mean where one run gives no interval)."""
    def measure(g: Group) -> float:
        mean, half = mean_t(per_run(g))
        return mean if math.isnan(half) else mean + side * half
    return measure


def saved_interval(g: Group, retrain: list[Group], name: str) -> list[tuple[float | None, str]]:
    """Compute saved at the mean, and the two ends of its interval with both spreads at their
    worst: the low end takes the method's accuracy at its interval's low end against
    retraining's curve at its intervals' high ends (retraining needs fewer steps), the high
    end the other way round. [(saved, bound sign)] for mean, low, high."""
    per_run, measure, _ = MEASURES[name]
    steps = g.total_steps()
    return [saved_at(steps, measure(g), retrain, measure),
            saved_at(steps, interval_end(per_run, -1)(g), retrain, interval_end(per_run, +1)),
            saved_at(steps, interval_end(per_run, +1)(g), retrain, interval_end(per_run, -1))]


def savings_rows(groups: list[Group]) -> list[dict]:
    retrain = [g for g in groups if g.algorithm == RETRAIN]
    rows = []
    for g in groups:
        if g.algorithm == RETRAIN:
            continue
        steps = g.total_steps()
        needed, bound = retrain_steps_for(g.stream_accuracy(), retrain)
        needed_final, bound_final = retrain_steps_for(g.final_accuracy(), retrain, Group.final_accuracy)
        row = {"method": METHOD_NAMES.get(g.algorithm, g.algorithm), "epsilon": g.epsilon,
               "epochs_per_request": g.epochs, "n_runs": len(g.runs), "stream_accuracy": g.stream_accuracy(),
               "final_accuracy": g.final_accuracy(), "cumulative_steps": steps,
               "retrain_steps_same_accuracy": needed, "retrain_bound": bound,
               "compute_saved": None if needed is None else 1.0 - steps / needed,
               "retrain_steps_same_final_accuracy": needed_final, "final_bound": bound_final,
               "compute_saved_final": None if needed_final is None else 1.0 - steps / needed_final}
        for name, (per_run, _, saved) in MEASURES.items():
            mean, ci = mean_t(per_run(g))
            row[f"{name}_accuracy_ci95"] = blank_cell(ci)
            row[f"{name}_accuracy_low"], row[f"{name}_accuracy_high"] = blank_cell(mean - ci), blank_cell(mean + ci)
            _, low, high = saved_interval(g, retrain, name)
            row[f"{saved}_low"], row[f"{saved}_high"] = blank_cell(low[0]), blank_cell(high[0])
        stream = paired_with_retrain(g, retrain, Group.stream_accuracies)
        final = paired_with_retrain(g, retrain, Group.final_accuracies)
        row["vs_retrain_pairs"] = "" if stream is None else stream[2]
        row["stream_vs_retrain"], row["stream_vs_retrain_ci95"] = (("", "") if stream is None
                                                                   else (stream[0], blank_cell(stream[1])))
        row["final_vs_retrain"], row["final_vs_retrain_ci95"] = (("", "") if final is None
                                                                 else (final[0], blank_cell(final[1])))
        rows.append(row)
    return rows


def _pm(mean, half, digits: int = 3) -> str:
    """`mean ± half` for the markdown table; a bare mean where there is no interval."""
    if mean in ("", None):
        return "–"
    return f"{mean:.{digits}f}" if half in ("", None) else f"{mean:.{digits}f} ± {half:.{digits}f}"


SIGNS = {"=": "", "<": "≤ ", ">": "≥ ", "": ""}


def _saved_cell(g: Group, retrain: list[Group], name: str) -> str:
    """Compute saved at the means, then its interval (saved_interval), in percent."""
    cells = ["–" if saved is None else f"{SIGNS[bound]}{int(round(100 * saved))}%"
             for saved, bound in saved_interval(g, retrain, name)]
    return cells[0] if cells[1] == cells[2] == cells[0] else f"{cells[0]} ({cells[1]} to {cells[2]})"


def savings_markdown(groups: list[Group], rows: list[dict]) -> str:
    """The savings table for a reader: means ± Student-t 95% half-widths over the seeds."""
    retrain = [g for g in groups if g.algorithm == RETRAIN]
    lines = ["| method | epochs per request | seeds | stream accuracy | final accuracy | steps for the stream | "
             "compute saved at equal stream accuracy (interval) | at equal final accuracy (interval) | "
             "stream accuracy minus retrain at the same budget (paired) | final accuracy minus retrain (paired) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in retrain:
        stream, final = mean_t(g.stream_accuracies()), mean_t(g.final_accuracies())
        lines.append(f"| Retrain from scratch | {g.epochs} | {len(g.runs)} | {_pm(stream[0], blank_cell(stream[1]))} | "
                     f"{_pm(final[0], blank_cell(final[1]))} | {g.total_steps():.0f} | (reference) | (reference) | – | – |")
    certified = [g for g in groups if g.algorithm != RETRAIN]
    for row, g in zip(rows, certified):
        lines.append(
            f"| {row['method']} (eps {g.epsilon:.3g}) | {g.epochs} | {len(g.runs)} | "
            f"{_pm(row['stream_accuracy'], row['stream_accuracy_ci95'])} | "
            f"{_pm(row['final_accuracy'], row['final_accuracy_ci95'])} | {row['cumulative_steps']:.0f} | "
            f"{_saved_cell(g, retrain, 'stream')} | {_saved_cell(g, retrain, 'final')} | "
            f"{_pm(row['stream_vs_retrain'], row['stream_vs_retrain_ci95'])} | "
            f"{_pm(row['final_vs_retrain'], row['final_vs_retrain_ci95'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- drawing


def draw(groups: list[Group], out_base: Path, subtitle: str) -> list[Path]:
    """Top row: test accuracy after each request, one panel per budget per request.
    Bottom: cumulative compute against requests (one line per budget: every method spends
    the same steps at the same budget), and stream accuracy against total compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.figures.plots import RC, STYLE, _save

    budgets = sorted({g.epochs for g in groups})
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(max(2.4 * len(budgets), 7.0), 6.2), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05])
        accuracy_axes = np.atleast_1d(top.subplots(1, len(budgets), sharey=True))
        compute_ax, tradeoff_ax = bottom.subplots(1, 2)
        handles = {}
        for ax, epochs in zip(accuracy_axes, budgets):
            for g in (g for g in groups if g.epochs == epochs):
                color, marker = STYLE.get(g.algorithm, ("tab:gray", "o"))
                accuracy = g.per_request("test_accuracy")
                x = np.arange(1, g.num_requests + 1)
                ci = np.nan_to_num([mean_t(accuracy[:, i])[1] for i in range(g.num_requests)], nan=0.0)
                line = ax.errorbar(x, accuracy.mean(0), yerr=ci, color=color, marker=marker, capsize=2,
                                   linewidth=1, markersize=3)
                handles.setdefault(g.label.split(",")[0], line)
            ax.set_title(f"{epochs} epochs per request")
            ax.set_xlabel("Requests processed")
            ax.grid(alpha=0.3)
        accuracy_axes[0].set_ylabel("Test accuracy after the request")
        for index, epochs in enumerate(budgets):
            g = next(g for g in groups if g.epochs == epochs)
            steps = g.per_request("cumulative_steps").mean(0)
            compute_ax.plot(np.arange(1, len(steps) + 1), steps, color=plt.get_cmap("Greys")(0.4 + 0.6 * index
                                                                                            / max(len(budgets) - 1, 1)),
                            marker=".", linewidth=1, label=f"{epochs} epochs per request")
        compute_ax.set(xlabel="Requests processed", ylabel="Cumulative compute (gradient steps)")
        compute_ax.legend(frameon=False)
        for algorithm in dict.fromkeys(g.algorithm for g in groups):
            members = sorted((g for g in groups if g.algorithm == algorithm), key=lambda g: g.total_steps())
            color, marker = STYLE.get(algorithm, ("tab:gray", "o"))
            tradeoff_ax.errorbar([g.total_steps() for g in members], [g.stream_accuracy() for g in members],
                                 yerr=np.nan_to_num([mean_t(g.stream_accuracies())[1] for g in members], nan=0.0),
                                 color=color, marker=marker, linewidth=1, capsize=2, markersize=3)
            for g in members:
                tradeoff_ax.annotate(str(g.epochs), (g.total_steps(), g.stream_accuracy()), fontsize=6,
                                     textcoords="offset points", xytext=(3, -8))
        tradeoff_ax.set(xlabel="Compute for the whole stream (gradient steps)",
                        ylabel="Test accuracy, mean over the requests")
        tradeoff_ax.set_title("accuracy for the compute (labels: epochs per request)")
        for ax in (compute_ax, tradeoff_ax):
            ax.grid(alpha=0.3)
        bottom.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles),
                      frameon=False)
        fig.suptitle(subtitle, fontsize=8)
        return _save(fig, out_base)


# ---------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.figures.request_stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_arguments(p)
    add_output_arguments(p)
    return p.parse_args(argv)


def write_csv(path: Path, columns, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_figure(args) -> list[Path]:
    runs, others = stream_runs(load_runs(args.logs, args.folder))
    where = f"{args.logs}" + (f" (folder {args.folder})" if args.folder else "")
    if not runs:
        raise FigureInputError(f"no finished deletion-request streams in {where} ({others} other runs): a stream "
                               "is a run whose config has a requests: section")
    groups = group_runs(runs)
    if not any(g.algorithm == RETRAIN for g in groups):
        print("  no retrain streams: the savings table has no reference", file=sys.stderr)
    out_base = Path(args.out) / f"{args.prefix}request_stream"
    k = sorted({g.num_requests for g in groups})
    subtitle = (f"Deletion requests over time ({'/'.join(map(str, k))} requests; {len(runs)} runs; "
                "test accuracy: mean ± Student-t 95% interval over the seeds)")
    paths = draw(groups, out_base, subtitle)
    paths.append(write_csv(out_base.with_suffix(".csv"), CSV_COLUMNS, csv_rows(groups)))
    savings = savings_rows(groups)
    paths.append(write_csv(out_base.with_name(out_base.name + "_savings.csv"), SAVINGS_COLUMNS, savings))
    markdown = out_base.with_name(out_base.name + "_savings.md")
    markdown.write_text(savings_markdown(groups, savings), encoding="utf-8")
    paths.append(markdown)
    for g in groups:
        mean, ci = mean_t(g.stream_accuracies())
        print(f"  {g.label}: {len(g.runs)} runs, stream accuracy {_pm(mean, blank_cell(ci), 4)}, "
              f"{g.total_steps():.0f} steps")
    bounds = {"=": "", ">": "at least ", "<": "at most "}
    for row in savings:
        if row["compute_saved"] is not None:
            print(f"  {row['method']} at {row['epochs_per_request']} ep/request: compute saved against retraining "
                  f"at equal stream accuracy {bounds[row['retrain_bound']]}{row['compute_saved']:.1%}, at equal "
                  f"final accuracy {bounds[row['final_bound']]}{row['compute_saved_final']:.1%}")
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make_figure(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

"""The baselines comparison: certified and empirical unlearning on the same forget sets.

    python -m src.figures --figure baselines --logs logs --folder baselines_runs/mini-mnist5k --out docs/figures --prefix mini_

From the finished runs (their summary.json `evaluation`), per forget set and method:
* ToW / ToW on val / ToW-MIA recomputed against the retrain run of the same forget set and
  data seed among these runs (so the order in which runs finished does not matter);
* for a method run over a grid (several settings, e.g. learning rates, each over the same
  seeds), the setting with the best mean ToW on val (src/evaluation/selection.py);
* for that setting, the mean and Student-t 95% interval over seeds of forget / retain / test
  accuracy, MIA-efficacy, ToW, ToW-MIA, unlearning seconds and compute (gradient evaluations
  in epochs of the train split).
Writes <prefix>baselines.csv and .md (the table, then which differences in ToW are
significant: baselines_paired.py, also as <prefix>baselines_paired.csv) and .png / .pdf
(accuracy and ToW against compute). No matplotlib in this module (baselines_plot.py draws).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from src.config import ToWConfig
from src.evaluation.pipeline import REFERENCE_ALGORITHM, tow_against
from src.evaluation.selection import select_settings, setting_means
from src.evaluation.tow import t_interval
from src.figures.cli import report_left_out
from src.figures.runs import FigureInputError, Run

NAMES = {
    "retrain": "Retrain",
    "iteration": "Gradient Clipping",
    "contractive_coefficients": "Model Clipping",
    "dp-baseline": "Output Perturbation",
    "dp-sgd": "DP-SGD",
    "ft": "FT",
    "ga": "GA (NegGrad)",
    "neggrad_plus": "NegGrad+",
    "l1_sparse": "L1-sparse",
    "scrub": "SCRUB",
    "random_label": "Random labels",
    "salun": "SalUn",
    "influence": "IU (influence)",
    "sharp_minmax": "Sharp MinMax",
}
ORDER = list(NAMES)
# Keys that tell runs of one setting apart without changing the setting.
NOT_SETTING = ("name", "global_seed", "logs_dir", "checkpoints_dir", "device", "wandb", "dataset.seed",
               "dataset.num_workers", "dataset.root", "dataset.features_root", "evaluation")
METRICS = ("forget", "retain", "test", "mia_efficacy", "tow", "tow_mia", "tow_val", "seconds", "compute")


@dataclass
class Record:
    run: Run
    algorithm: str
    method: str
    forget_set: str
    setting: str
    seed: tuple
    certified_epsilon: float | None
    values: dict = field(default_factory=dict)


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def method_label(run: Run) -> str:
    name = NAMES.get(run.algorithm, run.algorithm)
    sam = run.cfg("unlearning.sam")
    if isinstance(sam, dict):
        name += f" + SAM ({sam.get('sign', 'min')}, rho {sam.get('rho')})"
    epsilon = (run.summary.get("certificate") or {}).get("certified_epsilon")
    if run.algorithm != REFERENCE_ALGORITHM and epsilon is not None:
        name += f" (eps {epsilon:.3g})"
    return name


def forget_set_label(run: Run) -> str:
    forget = run.cfg("dataset.forget") or {}
    strategy = forget.get("strategy", "random")
    if strategy == "memorization":
        return f"memorization-{(forget.get('memorization') or {}).get('group', 'high')}"
    if strategy == "class":
        return "class " + ",".join(str(c) for c in forget.get("classes") or [])
    return "random"


def setting_of(run: Run) -> str:
    flat = flatten(run.config)
    kept = {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_SETTING)}
    return json.dumps(kept, sort_keys=True, default=str)


def records_of(runs: list[Run]) -> tuple[list[Record], dict]:
    """A record per run with an evaluation; ToW recomputed against its retrain run."""
    dropped = defaultdict(int)
    with_eval = [r for r in runs if isinstance(r.summary.get("evaluation"), dict)]
    dropped["no evaluation in summary.json (run before the forgetting metrics existed)"] = len(runs) - len(with_eval)
    references = defaultdict(list)
    for run in with_eval:
        ident = run.summary["evaluation"].get("identity") or {}
        if run.algorithm == REFERENCE_ALGORITHM:
            references[(ident.get("fingerprint"), ident.get("model"))].append(run)
    records = []
    for run in with_eval:
        ev = run.summary["evaluation"]
        ident = ev.get("identity") or {}
        candidates = references.get((ident.get("fingerprint"), ident.get("model")), [])
        reference = min(candidates, key=lambda r: (r.cfg("global_seed") != run.cfg("global_seed"), r.run_id),
                        default=None)
        values = {s: ev["accuracy"][s] for s in ("forget", "retain", "test")}
        values["mia_efficacy"] = ev.get("mia_efficacy")
        if reference is not None:
            tow_cfg = ToWConfig(**(run.cfg("evaluation.tow") or {}))
            values.update({k: v for k, v in tow_against(ev, reference.summary["evaluation"], tow_cfg).items()
                           if k in ("tow", "tow_val", "tow_mia")})
        else:
            dropped["no retrain run of the same forget set and data seed (ToW left empty)"] += 1
        values["seconds"] = (run.summary.get("timings") or {}).get("unlearn_seconds")
        compute = run.summary.get("compute") or {}
        if compute.get("train_size"):
            values["compute"] = compute["gradient_evaluations"] / compute["train_size"]
        records.append(Record(run, run.algorithm, method_label(run), forget_set_label(run), setting_of(run),
                              (run.cfg("dataset.seed"), run.cfg("global_seed")),
                              (run.summary.get("certificate") or {}).get("certified_epsilon"), values))
    return records, dropped


def setting_labels(records: list[Record]) -> dict:
    """{setting: 'key=value, ...'}: the keys in which a method's settings differ."""
    by_group = defaultdict(set)
    for r in records:
        by_group[(r.forget_set, r.method)].add(r.setting)
    labels = {}
    for settings in by_group.values():
        flats = {s: json.loads(s) for s in settings}
        keys = sorted({k for f in flats.values() for k in f if len({json.dumps(g.get(k)) for g in flats.values()}) > 1})
        for s, f in flats.items():
            labels[s] = ", ".join(f"{k.split('.')[-1]}={f.get(k)}" for k in keys)
    return labels


@dataclass
class Row:
    forget_set: str
    method: str
    algorithm: str
    certified_epsilon: float | None
    setting: str
    grid: str
    n_seeds: int
    stats: dict  # metric -> (mean, ci) or None
    by_seed: dict = field(default_factory=dict)  # metric -> {seed: value}: the paired comparisons' input


def table_rows(records: list[Record]) -> list[Row]:
    groups = defaultdict(list)
    for r in records:
        groups[(r.forget_set, r.method)].append(r)
    selection_input = [{"group": (r.forget_set, r.method), "setting": r.setting, "tow_val": r.values.get("tow_val")}
                       for r in records]
    chosen = select_settings(selection_input)
    grid = setting_means(selection_input)
    labels = setting_labels(records)
    rows = []
    for (forget_set, method), members in groups.items():
        setting = chosen.get((forget_set, method), members[0].setting)
        kept = [r for r in members if r.setting == setting]
        stats, by_seed = {}, {}
        for metric in METRICS:
            values = [r.values.get(metric) for r in kept if r.values.get(metric) is not None]
            stats[metric] = t_interval(values) if values else None
            by_seed[metric] = {r.seed: r.values[metric] for r in kept if r.values.get(metric) is not None}
        grid_text = "; ".join(f"{labels[s] or 'one setting'}: {m:.3f}" for s, (m, _) in
                              sorted(grid.get((forget_set, method), {}).items(), key=lambda kv: labels[kv[0]]))
        first = kept[0]
        rows.append(Row(forget_set, method, first.algorithm, first.certified_epsilon, labels[setting], grid_text,
                        len({r.seed for r in kept}), stats, by_seed))
    rank = {name: i for i, name in enumerate(ORDER)}
    sets = sorted({r.forget_set for r in rows}, key=lambda s: (s != "random", s))
    return sorted(rows, key=lambda r: (sets.index(r.forget_set), rank.get(r.algorithm, len(ORDER)), r.method))


# ---------------------------------------------------------------------------------------
# Output

CSV_COLUMNS = ["forget_set", "method", "certified_epsilon", "setting", "n_seeds"] + \
    [f"{m}{suffix}" for m in METRICS for suffix in ("", "_ci95")] + ["selection_grid_tow_val"]


def csv_rows(rows: list[Row]) -> list[dict]:
    out = []
    for r in rows:
        row = {"forget_set": r.forget_set, "method": r.method,
               "certified_epsilon": "none" if r.certified_epsilon is None else f"{r.certified_epsilon:g}",
               "setting": r.setting, "n_seeds": r.n_seeds, "selection_grid_tow_val": r.grid}
        for m in METRICS:
            mean, ci = r.stats[m] if r.stats[m] else (None, None)
            row[m] = "" if mean is None else f"{mean:.6g}"
            row[f"{m}_ci95"] = "" if ci is None else f"{ci:.3g}"
        out.append(row)
    return out


def _cell(stat, percent: bool = False, digits: int = 3) -> str:
    if stat is None:
        return "-"
    mean, ci = stat
    scale = 100 if percent else 1
    text = f"{mean * scale:.1f}" if percent else f"{mean:.{digits}f}"
    if ci is not None:
        text += f" ± {ci * scale:.1f}" if percent else f" ± {ci:.{digits}f}"
    return text


def markdown(rows: list[Row], title: str) -> str:
    lines = [f"# {title}", "",
             "Mean ± Student-t 95% interval over seeds. Accuracies and MIA-efficacy in %; ToW, ToW-MIA in [0, 1] "
             "(1 = retrain); seconds of unlearning; compute in gradient evaluations per train-split example. "
             "Empirical methods: the setting with the best mean ToW on val (never test).", ""]
    for forget_set in dict.fromkeys(r.forget_set for r in rows):
        lines += [f"## Forget set: {forget_set}", "",
                  "| method | certified epsilon | setting | seeds | forget acc | retain acc | test acc | MIA-efficacy "
                  "| ToW | ToW-MIA | seconds | compute |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.forget_set != forget_set:
                continue
            eps = "none" if r.certified_epsilon is None else f"{r.certified_epsilon:.3g}"
            s = r.stats
            lines.append(f"| {r.method} | {eps} | {r.setting or '-'} | {r.n_seeds} | {_cell(s['forget'], True)} | "
                         f"{_cell(s['retain'], True)} | {_cell(s['test'], True)} | {_cell(s['mia_efficacy'], True)} | "
                         f"{_cell(s['tow'])} | {_cell(s['tow_mia'])} | {_cell(s['seconds'], digits=1)} | "
                         f"{_cell(s['compute'], digits=1)} |")
        lines.append("")
    return "\n".join(lines)


def make(runs: list[Run], out_base: Path, title: str) -> list[Path]:
    records, dropped = records_of(runs)
    if not records:
        raise FigureInputError("none of the finished runs has forgetting metrics (summary.json 'evaluation'); "
                               "run them with this version of experiment.py")
    report_left_out(dropped)
    rows = table_rows(records)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_base.with_suffix(".csv"), out_base.with_suffix(".md")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(rows))
    from src.figures.baselines_paired import paired_csv_rows, paired_markdown

    md_path.write_text(markdown(rows, title) + "\n" + paired_markdown(rows) + "\n", encoding="utf-8")
    paired_path = out_base.with_name(out_base.name + "_paired.csv")
    with open(paired_path, "w", newline="", encoding="utf-8") as handle:
        table = paired_csv_rows(rows)
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else ["forget_set"])
        writer.writeheader()
        writer.writerows(table)
    from src.figures.baselines_plot import plot_baselines

    return plot_baselines(rows, out_base, title) + [csv_path, md_path, paired_path]

"""RUM against the single methods on the same `mix` forget set (baselines_runs/rum-mnist5k).

    python -m src.figures.rum --logs logs --folder baselines_runs/rum-mnist5k --out docs/figures --prefix mini_

From the finished runs of the folder, one row per configuration (the config's name without its
seed suffix `-d<dataset seed>-g<global seed>`): the mean and Student-t 95% interval over seeds
of forget / retain / test accuracy, MIA-efficacy, ToW and ToW-MIA (recomputed against the
retrain run of the same forget set and data seed among these runs), and each group's forget
accuracy for RUM. Then the paired differences over seeds that say whether refining helps:
RUM grouped by memorization against its shuffled control and against the single method of
its steps. With `--proxies`, each memorization proxy's Spearman correlation with the
estimated memorization over the train split, per data seed (from the cached pretrained models
and scores), with its interval over seeds.

Writes <prefix>rum.md, .csv (the table), .png / .pdf (ToW and ToW-MIA per configuration).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from src.config import ToWConfig
from src.evaluation.pipeline import REFERENCE_ALGORITHM, tow_against
from src.evaluation.tow import t_interval
from src.figures.cli import add_log_arguments, add_output_arguments, run_figure
from src.figures.runs import FigureInputError, load_runs

SEED_SUFFIX = re.compile(r"-d(\d+)-g(\d+)$")
LABELS = {
    "rt": "Retrain (reference)",
    "ft": "FT",
    "salun": "SalUn",
    "ngplus": "NegGrad+",
    "gc": "Gradient Clipping (eps 1)",
    "rum-nft-salun": "RUM nothing -> FT -> SalUn (memorization)",
    "rum-ng3": "RUM NegGrad+ x3 (memorization)",
    "rum-ng3-shuffled": "RUM NegGrad+ x3 (shuffled control)",
    "rum-ng3-confidence": "RUM NegGrad+ x3 (proxy: confidence)",
    "rum-ng3-maxconf": "RUM NegGrad+ x3 (proxy: max confidence)",
    "rum-ng3-entropy": "RUM NegGrad+ x3 (proxy: negative entropy)",
    "rum-ng3-biacc": "RUM NegGrad+ x3 (proxy: 0/1 correctness)",
    "rum-ng3-holdoutkl": "RUM NegGrad+ x3 (proxy: hold-out KL)",
    "rum-ng3-curvature": "RUM NegGrad+ x3 (proxy: loss curvature)",
    "rum-ng3-entanglement": "RUM NegGrad+ x3 (entanglement)",
    "rum-gc3": "Certified RUM: Gradient Clipping x3 (eps 1)",
}
METRICS = ("forget", "retain", "test", "mia_efficacy", "tow", "tow_mia", "forget_low", "forget_mid", "forget_high")
PERCENT = {"forget", "retain", "test", "mia_efficacy", "forget_low", "forget_mid", "forget_high"}
PAIRS = (("rum-ng3", "rum-ng3-shuffled", "refined against shuffled groups"),
         ("rum-ng3", "ngplus", "RUM NegGrad+ x3 against NegGrad+ on the whole forget set"),
         ("rum-nft-salun", "salun", "RUM nothing -> FT -> SalUn against SalUn on the whole forget set"),
         ("rum-gc3", "gc", "certified RUM against Gradient Clipping on the whole forget set"))
PROXIES = ("confidence", "max_conf", "entropy", "bi_acc", "holdout_kl", "curvature")


def values_of(runs) -> dict:
    """{config tag: {seed: {metric: value}}}, ToW against the retrain run of the same data seed."""
    references = {}
    for run in runs:
        if run.algorithm == REFERENCE_ALGORITHM:
            ident = run.summary["evaluation"]["identity"]
            references[(ident["fingerprint"], ident["model"])] = run
    out = defaultdict(dict)
    for run in runs:
        match = SEED_SUFFIX.search(str(run.cfg("name", "")))
        ev = run.summary.get("evaluation")
        if match is None or not isinstance(ev, dict):
            continue
        tag, seed = str(run.cfg("name"))[:match.start()], (int(match.group(1)), int(match.group(2)))
        values = {s: ev["accuracy"][s] for s in ("forget", "retain", "test")}
        values["mia_efficacy"] = ev.get("mia_efficacy")
        reference = references.get((ev["identity"]["fingerprint"], ev["identity"]["model"]))
        if reference is not None:
            tow = tow_against(ev, reference.summary["evaluation"], ToWConfig())
            values.update(tow=tow["tow"], tow_mia=tow["tow_mia"])
        parts = (ev.get("forget_groups") or {}).get("accuracy") or {}
        for group in ("low", "mid", "high"):
            values[f"forget_{group}"] = parts.get(group)
        out[tag][seed] = values
    return out


def table(values: dict) -> list[dict]:
    rows = []
    for tag in [t for t in LABELS if t in values] + sorted(t for t in values if t not in LABELS):
        per_seed = values[tag]
        row = {"tag": tag, "label": LABELS.get(tag, tag), "seeds": len(per_seed)}
        for metric in METRICS:
            found = [v[metric] for v in per_seed.values() if v.get(metric) is not None]
            row[metric] = t_interval(found) if found else None
        rows.append(row)
    return rows


def paired(values: dict) -> list[dict]:
    """ToW and ToW-MIA of `a` minus `b`, seed by seed, with the t interval of the differences."""
    out = []
    for a, b, what in PAIRS:
        if a not in values or b not in values:
            continue
        seeds = sorted(set(values[a]) & set(values[b]))
        row = {"what": what, "a": a, "b": b, "seeds": len(seeds)}
        for metric in ("tow", "tow_mia"):
            d = [values[a][s][metric] - values[b][s][metric] for s in seeds
                 if values[a][s].get(metric) is not None and values[b][s].get(metric) is not None]
            row[metric] = t_interval(d) if d else None
        out.append(row)
    return out


def proxy_correlations(folder: str) -> dict:
    """{proxy: [Spearman rho per data seed]} against the estimated memorization of the train
    split, from the folder's `rum-ng3-d*` configs (their cached model and scores)."""
    from scipy.stats import spearmanr

    from src.config import load_config
    from src.data.datamodule import get_datamodule
    from src.evaluation.proxies import proxy_scores
    from src.request_stream.rum import group_scores
    from src.runner import load_pretrained
    from src.training.trainer import Console, build_model

    out = defaultdict(list)
    configs = sorted(Path(folder).glob("rum-ng3-d*.yaml"))
    if not configs:
        raise FigureInputError(f"{folder}: no rum-ng3-d*.yaml config to read the seeds from")
    for path in configs:
        config = load_config(path)
        data = get_datamodule(config, "cpu")
        model = build_model(config, data.input_shape, "cpu")
        load_pretrained(config, model, "cpu", Console(quiet=True), data)
        memorization = group_scores(config, data, "cpu")
        for proxy in PROXIES:
            scores = proxy_scores(proxy, config, data, model)
            out[proxy].append(float(spearmanr(scores, memorization).statistic))
    return out


def _cell(stat, percent=False) -> str:
    if stat is None:
        return "-"
    mean, half = stat
    scale, digits = (100, 1) if percent else (1, 3)
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {half * scale:.{digits}f}" if half is not None else "")


def markdown(rows, pairs, correlations) -> str:
    lines = ["# RUM on the same `mix` forget set (baselines_runs/rum-mnist5k)", "",
             "Mean ± Student-t 95% interval over seeds. Accuracies and MIA-efficacy in %; ToW, ToW-MIA in [0, 1] "
             "(1 = retrain). Forget low / mid / high: accuracy on each memorization group of the mix after the run.",
             "", "| configuration | seeds | forget acc | retain acc | test acc | MIA-efficacy | ToW | ToW-MIA | "
             "forget low | forget mid | forget high |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_cell(r[m], m in PERCENT) for m in METRICS]
        lines.append(f"| {r['label']} | {r['seeds']} | " + " | ".join(cells) + " |")
    if pairs:
        lines += ["", "## Does refining help? Paired differences over seeds (first minus second)", "",
                  "| comparison | seeds | ToW difference | ToW-MIA difference |", "|---|---|---|---|"]
        for p in pairs:
            lines.append(f"| {p['what']} | {p['seeds']} | {_cell(p['tow'])} | {_cell(p['tow_mia'])} |")
    if correlations:
        lines += ["", "## Memorization proxies: Spearman correlation with the estimated memorization", "",
                  "Over the 3,600 train-split digits of each data seed (the pretrained model's proxies; "
                  "confidence-type proxies negated, so that high means memorized).", "",
                  "| proxy | seeds | Spearman rho |", "|---|---|---|"]
        for proxy, rhos in correlations.items():
            lines.append(f"| {proxy} | {len(rhos)} | {_cell(t_interval(rhos))} |")
    return "\n".join(lines) + "\n"


def write_csv(rows, path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["configuration", "seeds"] + [f"{m}_{k}" for m in METRICS for k in ("mean", "ci95")])
        for r in rows:
            cells = []
            for m in METRICS:
                mean, half = r[m] if r[m] is not None else (None, None)
                cells += ["" if mean is None else f"{mean:.6g}", "" if half is None else f"{half:.6g}"]
            writer.writerow([r["tag"], r["seeds"], *cells])


def plot(rows, out_base: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["tag"] != "rt" and r["tow"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(shown) + 1.5), sharey=True)
    y = np.arange(len(shown))[::-1]
    for ax, metric, title in ((axes[0], "tow", "ToW"), (axes[1], "tow_mia", "ToW-MIA")):
        means = [r[metric][0] if r[metric] else np.nan for r in shown]
        halves = [(r[metric][1] or 0) if r[metric] else 0 for r in shown]
        colours = ["tab:green" if r["tag"].startswith("rum-gc") or r["tag"] == "gc" else
                   "tab:blue" if r["tag"].startswith("rum") else "tab:gray" for r in shown]
        ax.barh(y, means, xerr=halves, color=colours, capsize=3)
        ax.set_title(f"{title} (1 = retrain), mean ± 95% CI")
        ax.set_xlim(min(0.5, np.nanmin(means) - 0.05), 1.0)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [r["label"] for r in shown], fontsize=8)
    fig.suptitle("RUM and the single methods on the same mix forget set (MNIST-5k, tinier_net)")
    fig.tight_layout()
    paths = []
    for suffix in (".png", ".pdf"):
        path = out_base.with_suffix(suffix)
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def make(args) -> list[Path]:
    notes = []
    runs = load_runs(args.logs, args.folder, notes)
    for note in notes:
        print(f"  {note}", file=sys.stderr)
    values = values_of(runs)
    if not values:
        raise FigureInputError(f"no finished runs of {args.folder or 'any folder'} in {args.logs}")
    rows, pairs = table(values), paired(values)
    correlations = proxy_correlations(args.folder) if args.proxies else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{args.prefix}rum"
    base.with_suffix(".md").write_text(markdown(rows, pairs, correlations))
    write_csv(rows, base.with_suffix(".csv"))
    return [base.with_suffix(".md"), base.with_suffix(".csv"), *plot(rows, base)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.figures.rum", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxies", action="store_true",
                   help="also the proxies' Spearman correlations (reads the cached models and scores)")
    add_log_arguments(p, "baselines_runs/rum-mnist5k", "the configs' folder")
    add_output_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_figure(lambda: make(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())

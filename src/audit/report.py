"""What an audit leaves behind: audits/<id>/audit.json, audits/<id>/audit.png, the tightness table."""

from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from src.audit.bounds import split_halves


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the code that ran the audit, "+dirty" when it has uncommitted
    changes; None outside a git checkout (a copy without .git). Read once per process, when
    the CLI starts (src/audit/__main__.py): a commit made while a long folder audit runs
    must not be recorded for the audits that follow it, whose code was loaded before it."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_audit(result, directory: Path) -> Path:
    """audit.json and audit.png in `directory`; the JSON is written last."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_audit(result, directory / "audit.png")
    path = directory / "audit.json"
    _atomic_write(path, (json.dumps(result.as_dict(), indent=2) + "\n").encode())
    return path


def _oriented(result):
    """The selected score of each world, oriented so that the test's region R is
    {score > threshold}, and which world is P (the numerator of the bound)."""
    test = result.bound.test
    sign = 1.0 if test.side == ">" else -1.0
    a, b = sign * result.selected_a, sign * result.selected_b
    return (a, b, "A", "B") if test.order == "A/B" else (b, a, "B", "A"), sign * test.threshold


def plot_audit(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bound = result.bound
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.histogram_bin_edges(np.concatenate([result.selected_a, result.selected_b]), bins=60)
    left.hist(result.selected_a, bins=bins, alpha=0.55, label="world A (trained on all data)", color="tab:red")
    left.hist(result.selected_b, bins=bins, alpha=0.55, label="world B (never saw the forget set)", color="tab:blue")
    left.axvline(bound.test.threshold, color="black", linestyle="--",
                 label=f"threshold (R: score {bound.test.side} t)")
    left.set_xlabel(f"score: {result.config.get('selected_score', '')}")
    left.set_ylabel("chains")
    left.legend(fontsize=8)
    left.set_title(f"{result.chains} chains per world, end of the noisy phase", fontsize=9)

    (p, q, p_name, q_name), threshold = _oriented(result)
    p, q = p[split_halves(len(p))[1]], q[split_halves(len(q))[1]]  # the evaluation half
    thresholds = np.unique(np.concatenate([p, q]))[::-1]
    tpr = np.array([np.mean(p > t) for t in thresholds])
    fpr = np.array([np.mean(q > t) for t in thresholds])
    floor = 1.0 / (2 * max(len(p), len(q)))
    right.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), color="black", label="empirical (evaluation half)")
    grid = np.logspace(np.log10(floor), 0, 200)
    right.plot(grid, grid, color="gray", linestyle=":", label="no information")
    if result.certified_epsilon is not None:
        allowed = np.minimum(1.0, np.exp(result.certified_epsilon) * grid + bound.delta)
        right.plot(grid, allowed, color="tab:green",
                   label=f"certificate: TPR <= e^{result.certified_epsilon:.3g} FPR + delta")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(f"FPR = {q_name}(R)")
    right.set_ylabel(f"TPR = {p_name}(R)")
    right.legend(fontsize=8, loc="lower right")
    right.set_title(result.line(), fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


TABLE_COLUMNS = ("method", "config", "certified epsilon", "after conversion", "exact instance", "Gaussian estimate",
                 "lower bound", "ratio", "Gaussian ratio", "ceiling", "forgetting quality", "challenge score",
                 "closeness lower bound", "N", "seconds")


def folder_record(result, config, config_name: str, seconds: float) -> dict:
    """One row of the folder table in numbers (None: not measured), as tightness-<folder>.json
    holds it and the figure reads it (src/figures/audit_table.py)."""
    slack, closeness = result.slack, result.closeness or {}
    return {"method": config.unlearning.algorithm, "config": config_name,
            "certified_epsilon": result.certified_epsilon, "after_conversion": slack.get("after_conversion"),
            "exact_instance": slack.get("exact_instance"),
            "exact_instance_interval": slack.get("exact_instance_interval"),
            "gaussian_estimate": None if result.gaussian is None else result.gaussian.epsilon,
            "lower_bound": result.bound.epsilon, "ceiling": result.bound.ceiling,
            "forgetting_quality": closeness.get("forgetting_quality"),
            "challenge_score": closeness.get("challenge_score"),
            "closeness_lower_bound": closeness.get("lower_bound"),
            "chains": result.chains, "seconds": seconds,
            "config_seeds": result.config.get("config_seeds", 1)}


def _markdown_row(r: dict) -> dict:
    from src.audit.audit import rounded_down, rounded_up

    def optional(x, form="{:.3f}"):
        return "-" if x is None else form.format(x)

    certified = r["certified_epsilon"]
    interval = r["exact_instance_interval"]
    return {"method": r["method"], "config": r["config"],
            "certified epsilon": "none" if certified is None else rounded_up(certified),
            "after conversion": optional(r["after_conversion"]),
            "exact instance": optional(r["exact_instance"]) + (
                "" if interval is None else " [{:.2f}, {:.2f}]".format(*interval)),
            "Gaussian estimate": optional(r["gaussian_estimate"]),
            "lower bound": rounded_down(r["lower_bound"]),
            "ratio": f"{r['lower_bound'] / certified:.3f}" if certified else "-",
            "Gaussian ratio": f"{r['gaussian_estimate'] / certified:.3f}" if certified and
            r["gaussian_estimate"] is not None else "-",
            "ceiling": rounded_down(r["ceiling"]),
            "forgetting quality": optional(r["forgetting_quality"]),
            "challenge score": optional(r["challenge_score"]),
            "closeness lower bound": "-" if r["closeness_lower_bound"] is None else
            rounded_down(r["closeness_lower_bound"]),
            "N": r["chains"], "seconds": f"{r['seconds']:.0f}"}


def seeds_note(records: list[dict]) -> str | None:
    """What the table says about configs with `seeds: N` (the audit ignores N)."""
    ensembles = [r for r in records if r["config_seeds"] > 1]
    if not ensembles:
        return None
    sizes = sorted({r["config_seeds"] for r in ensembles})
    return (f"Configs with `seeds: {', '.join(map(str, sizes))}` ({len(ensembles)} of {len(records)} rows): the audit "
            "ignores the members per run; each row audits member 0 (the config's own global_seed) with the "
            "audit's own N chains per world.")


def tightness_table(records: list[dict]) -> str:
    """A markdown table: how much of each certificate an audit can confirm, and how close
    each method comes to retraining; a note below it for configs with `seeds: N`."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for record in records:
        row = _markdown_row(record)
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    note = seeds_note(records)
    return "\n".join(lines + ([] if note is None else ["", note])) + "\n"


def write_folder_table(records: list[dict], out_base: Path, describe: dict) -> tuple[Path, Path]:
    """<out_base>.md (the table) and <out_base>.json (its numbers, what the figure reads)."""
    markdown, numbers = out_base.with_suffix(".md"), out_base.with_suffix(".json")
    write_text(numbers, json.dumps({**describe, "seeds_note": seeds_note(records), "rows": records}, indent=2) + "\n")
    write_text(markdown, tightness_table(records))
    return markdown, numbers


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text.encode())

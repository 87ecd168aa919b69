"""What an audit leaves behind: audits/<id>/audit.json, audits/<id>/audit.png, the tightness table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from src.audit.bounds import split_halves


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def code_commit() -> str | None:
    """The git commit of the code that ran the audit, "+dirty" when it has uncommitted
    changes; None outside a git checkout (a copy without .git)."""
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
                 "lower bound", "ratio", "Gaussian ratio", "ceiling", "forgetting quality", "closeness lower bound",
                 "N", "seconds")


def tightness_table(rows: list[dict]) -> str:
    """A markdown table: how much of each certificate an audit can confirm."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text.encode())

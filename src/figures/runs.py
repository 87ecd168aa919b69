"""Read finished runs from a logs directory: ``<logs>/<run_id>/{config.yaml, metrics.jsonl, summary.json}``.

This replaces the reference notebook's ``wandb.Api`` queries (upstream.md 9.1): a run is a
directory, ``summary.json`` is written last, so its presence means the run finished (the
notebook keeps only ``state == "finished"`` runs).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from src.errors import UserError


class FigureInputError(UserError):
    """Logs that cannot be read or that hold no run the requested figure can use."""


# Rows we keep in memory. Model Clipping logs its accountant every step, and every noisy or
# fine-tuning step logs a batch row: keeping those would cost gigabytes for a full sweep, and
# the figures only need validation rows and the once-per-run set-up and certificate rows.
KEPT_ROW_KEYS = (
    "Val (Unlearn)_accuracy",
    "Val (Train)_accuracy",
    "Val (Post Unlearning Setup)_accuracy",
    "pabi_steps",
    "certified_epsilon",
    "Test_accuracy",
    "dp_sigma",
)
# Keys whose smallest and largest value over all rows we keep: the notebook takes
# eps = min(epsilon), delta = min(delta) (and DP-SGD's label uses max(epsilon)).
EXTREME_KEYS = ("epsilon", "delta", "certified_epsilon", "certified_delta", "epsilon_published")
# A line without any of these strings cannot change what we read. Skipping its JSON parse
# makes reading several times faster (most lines are per-step batch rows); it still gets
# a cheap check, so a truncated or garbled line is reported all the same.
RELEVANT = ('"Val (', '"pabi_steps"', '"epsilon', '"delta"', '"certified_', '"certificate_valid"',
            '"Test_accuracy"', '"dp_sigma"')


@dataclass
class Run:
    run_id: str
    path: Path
    config: dict
    summary: dict
    rows: list = field(default_factory=list)  # kept rows (KEPT_ROW_KEYS), in file order
    mins: dict = field(default_factory=dict)  # EXTREME_KEYS -> smallest value logged
    maxs: dict = field(default_factory=dict)  # EXTREME_KEYS -> largest value logged
    certificate_valid: bool = True  # False if any row logged certificate_valid: false

    def cfg(self, dotted: str, default=None):
        """Config value at a dotted key (``unlearning.iteration.grad_clip``), or default."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or node.get(part) is None:
                return default
            node = node[part]
        return node

    @property
    def algorithm(self) -> str:
        return str(self.cfg("unlearning.algorithm", ""))

    @property
    def dataset(self) -> str:
        return str(self.cfg("dataset.name", ""))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(path: Path, run: Run) -> None:
    """Fill run.rows / mins / maxs / certificate_valid from a metrics.jsonl file."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line[0] == "{" and line[-1] == "}" and not any(s in line for s in RELEVANT):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise FigureInputError(
                    f"{path}, line {number}: not valid JSON ({err.msg}); "
                    "each line of metrics.jsonl must be one JSON object. "
                    "Fix or delete the line, or remove the run directory."
                ) from None
            if not isinstance(row, dict):
                raise FigureInputError(
                    f"{path}, line {number}: expected a JSON object, got {type(row).__name__}"
                )
            for key in EXTREME_KEYS:
                value = row.get(key)
                if is_number(value):
                    run.mins[key] = min(value, run.mins.get(key, value))
                    run.maxs[key] = max(value, run.maxs.get(key, value))
            if row.get("certificate_valid") is False:
                run.certificate_valid = False
            if any(key in row for key in KEPT_ROW_KEYS):
                run.rows.append(row)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FigureInputError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise FigureInputError(f"{path}: expected a JSON object")
    return data


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise FigureInputError(f"{path}: missing; every finished run directory needs its config.yaml")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise FigureInputError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise FigureInputError(f"{path}: expected a YAML mapping at the top level")
    return config


def _under(path: str, folder: str) -> bool:
    """Is ``path`` inside ``folder``? Compared as written and as absolute paths."""
    for p, f in ((os.path.normpath(path), os.path.normpath(folder)),
                 (os.path.abspath(path), os.path.abspath(folder))):
        if f == "." or p == f or p.startswith(f.rstrip(os.sep) + os.sep):
            return True
    return False


def load_runs(logs_dir, folder: str | None = None) -> list[Run]:
    """All finished runs under logs_dir, sorted by run id; only those from ``folder`` if given."""
    logs = Path(logs_dir)
    if not logs.is_dir():
        raise FigureInputError(f"logs directory {logs} does not exist (pass --logs DIR)")
    runs = []
    for directory in sorted(p for p in logs.iterdir() if p.is_dir()):
        summary_path = directory / "summary.json"
        if not summary_path.is_file():
            continue  # unfinished (or not a run directory at all)
        summary = _read_json(summary_path)
        if summary.get("finished") is False:
            continue
        if folder is not None and not _under(str(summary.get("config_file", "")), folder):
            continue
        run = Run(
            run_id=str(summary.get("run_id", directory.name)),
            path=directory,
            config=_read_config(directory / "config.yaml"),
            summary=summary,
        )
        metrics = directory / "metrics.jsonl"
        if metrics.is_file():
            read_metrics(metrics, run)
        runs.append(run)
    return runs

"""Read finished runs from a logs directory: ``<logs>/<run_id>/{config.yaml, metrics.jsonl, summary.json}``.

This replaces the reference notebook's ``wandb.Api`` queries (the original code): a run is a
directory, ``summary.json`` is written last, so its presence means the run finished (the
notebook keeps only ``state == "finished"`` runs).

A figure's intervals shrink with every run counted, so nothing may be counted that is not a
finished, sound run, and nothing twice: ``finished`` must be exactly ``true``; a run is
identified by its content (run id and a hash of its config), so a copied folder counts once;
a run with a value that is not a number where a number belongs, or with a NaN anywhere (a
diverged run), is left out. Each of these is reported with its file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from src import config_yaml
from src.errors import ConfigError, UserError


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
    problems: list = field(default_factory=list)  # bad values, "file, line N: ..." each
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


# experiment.py writes a non-finite number as one of these strings (strict JSON).
NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
# Keys whose value must be a number when present (may be infinite: an epsilon can be).
NUMERIC_KEYS = set(EXTREME_KEYS) | {"pabi_steps", "dp_sigma", "unlearn_epoch", "epoch", "state_step"}


def value_problem(key: str, value) -> str | None:
    """Why `value` cannot stand for `key` in a figure, or None."""
    if isinstance(value, str) and value in NON_FINITE:
        value = NON_FINITE[value]
    if isinstance(value, float) and math.isnan(value):
        return f"'{key}' is NaN (a diverged or broken run)"
    if key.endswith(("accuracy", "loss")):  # must be a finite number
        if not is_number(value):
            return f"'{key}' is {_shown(value)}, not a finite number"
    elif key in NUMERIC_KEYS and value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"'{key}' is {_shown(value)}, not a number"
    return None


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def read_metrics(path: Path, run: Run) -> None:
    """Fill run.rows / mins / maxs / certificate_valid from a metrics.jsonl file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = list(handle)
    except OSError as err:  # EIO, permissions: one line naming the file
        raise FigureInputError(f"{path}: cannot be read ({err.strerror or err}); fix or remove the run "
                               "directory") from None
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if line[0] == "{" and line[-1] == "}" and not any(s in line for s in RELEVANT) \
                and "NaN" not in line and "Infinity" not in line:
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
        for key, value in row.items():
            problem = value_problem(key, value)
            if problem:
                run.problems.append(f"{path}, line {number}: {problem}")
        for key in EXTREME_KEYS:
            value = row.get(key)
            if is_number(value):
                run.mins[key] = min(value, run.mins.get(key, value))
                run.maxs[key] = max(value, run.maxs.get(key, value))
        if row.get("certificate_valid") is False:
            run.certificate_valid = False
        if any(key in row for key in KEPT_ROW_KEYS):
            run.rows.append(row)


def read_text(path: Path) -> str:
    """A run's file as UTF-8 text; a file that is not UTF-8 or cannot be read (EIO,
    permissions) is one line naming it, not a traceback."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FigureInputError(f"{path}: cannot be read ({err.strerror or err}); fix or remove the run "
                               "directory") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise FigureInputError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}); fix or "
                               "remove the run directory") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise FigureInputError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise FigureInputError(f"{path}: expected a JSON object")
    return data


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise FigureInputError(f"{path}: missing; every finished run directory needs its config.yaml")
    read_text(path)  # unreadable or not UTF-8: said as for the other files of a run
    try:  # the bounded reader of configs: an alias bomb in a run's config.yaml is refused, not expanded
        config = config_yaml.read_file(path)
    except ConfigError as err:
        raise FigureInputError(f"{err}") from None
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


def config_hash(config: dict) -> str:
    """The run's config, minus where it was written or observed (the keys that are not part
    of a run id), as a short hash."""
    identity = {k: v for k, v in config.items() if k not in ("wandb", "logs_dir", "checkpoints_dir", "device")}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_runs(logs_dir, folder: str | None = None, notes: list | None = None) -> list[Run]:
    """All finished, sound runs under logs_dir, each once, sorted by directory name; only
    those from ``folder`` if given. ``notes`` receives one line per run left out or counted
    once (with its file)."""
    notes = [] if notes is None else notes
    logs = Path(logs_dir)
    if not logs.is_dir():
        raise FigureInputError(f"logs directory {logs} does not exist (pass --logs DIR)")
    runs, seen = [], {}
    for directory in sorted(p for p in logs.iterdir() if p.is_dir()):
        summary_path = directory / "summary.json"
        if not summary_path.is_file():
            continue  # unfinished (or not a run directory at all)
        summary = _read_json(summary_path)
        finished = summary.get("finished")
        if finished is not True:
            if finished is not False:  # "no", 1, null: not what experiment.py writes
                notes.append(f"{summary_path}: 'finished' is {_shown(finished)}, not true: not counted")
            continue
        if folder is not None and not _under(str(summary.get("config_file", "")), folder):
            continue
        run_id = summary.get("run_id", directory.name)
        if not isinstance(run_id, str) or not run_id:
            notes.append(f"{summary_path}: 'run_id' is {_shown(run_id)}, not a run id: left out")
            continue
        run = Run(run_id=run_id, path=directory, config=_read_config(directory / "config.yaml"), summary=summary)
        for key, value in summary.items():
            problem = value_problem(key, value)
            if problem:
                run.problems.append(f"{summary_path}: {problem}")
        metrics = directory / "metrics.jsonl"
        if metrics.is_file():
            read_metrics(metrics, run)
        if run.problems:
            notes.append(f"{run.problems[0]}: run left out" +
                         (f" ({len(run.problems) - 1} more bad values)" if len(run.problems) > 1 else ""))
            continue
        identity = (run.run_id, config_hash(run.config))
        if identity in seen:
            notes.append(f"{directory}: the same run as {seen[identity]} (run id {run.run_id}, same config): "
                         "counted once")
            continue
        other = next((d for (rid, _), d in seen.items() if rid == run.run_id), None)
        if other is not None:  # an edited config, or another code version: two runs, but say so
            notes.append(f"{directory}: run id {run.run_id} also at {other} with another config: both counted")
        seen[identity] = directory
        runs.append(run)
    return runs

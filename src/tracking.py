"""RunLogger: every metric to logs/<run>/metrics.jsonl, and to wandb when it is enabled.

The JSONL file is the source of truth (figures read it, offline); wandb is an optional
sink (`wandb.mode`: disabled by default, offline or online). Keys are the reference's
(upstream.md section 1.7), one JSON object per log call, like a wandb row.

A run is written into a staging directory and moved to logs/<run_id> only when it has
finished, with summary.json written last: a killed run leaves no half-written result,
and an earlier finished result is replaced only by a newer finished one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import yaml


def to_builtin(value):
    """Tensors and numpy scalars to plain Python numbers for JSON."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, dict):
        return {k: to_builtin(v) for k, v in value.items()}
    return value


@contextmanager
def naming(path):
    """An OSError from writing an open file carries no file name: give it `path`, so the
    user reads which file a full disk refused."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def json_safe(value):
    """JSON has no NaN or infinity (Python would write bare `NaN`, which other readers
    refuse): a non-finite number is written as the string "NaN", "Infinity" or "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(data, **kwargs) -> str:
    """Strict JSON text of `data` (see json_safe)."""
    return json.dumps(json_safe(data), allow_nan=False, **kwargs)


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with naming(path), open(tmp, "w") as f:
            f.write(dumps(data, indent=2, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # a failed write (disk full) leaves nothing behind
            tmp.unlink()


class RunDirectory:
    """logs/<run_id>, built in logs/<run_id>.partial-<pid> until the run finishes."""

    def __init__(self, logs_dir: str | Path, run_id: str):
        self.logs_dir = Path(logs_dir)
        self.run_id = run_id
        self.final = self.logs_dir / run_id
        self.staging = self.logs_dir / f"{run_id}.partial-{os.getpid()}"

    def create(self) -> Path:
        self._made_logs_dir = not self.logs_dir.exists()  # then a failed run removes it again
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_partials()
        if self.staging.exists():
            shutil.rmtree(self.staging)
        (self.staging / "ckpt").mkdir(parents=True)
        return self.staging

    def commit(self) -> Path:
        """Move the finished run into place; the old result, if any, goes only then."""
        trash = None
        if self.final.exists():
            trash = self.logs_dir / f".trash-{self.run_id}-{os.getpid()}"
            os.replace(self.final, trash)
        os.replace(self.staging, self.final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if getattr(self, "_made_logs_dir", False):
            try:
                self.logs_dir.rmdir()  # only if empty: another run may have written there since
            except OSError:
                pass

    def _remove_stale_partials(self) -> None:
        for path in self.logs_dir.glob(f"{self.run_id}.partial-*"):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLogger:
    def __init__(self, run_dir: str | Path, config: dict, run_id: str, wandb_config=None):
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.summary: dict = {}
        self.rows = 0
        self._file = open(self.run_dir / "metrics.jsonl", "w")
        with open(self.run_dir / "config.yaml", "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self._wandb = None
        if wandb_config is not None and wandb_config.mode != "disabled":
            self._wandb = _start_wandb(wandb_config, config, run_id)

    def log(self, row: dict) -> None:
        row = {k: to_builtin(v) for k, v in row.items()}
        with naming(self._file.name):
            self._file.write(dumps(row) + "\n")
        self.summary.update(row)
        self.rows += 1
        if self._wandb is not None:
            self._wandb.log(row)

    def flush(self) -> None:
        with naming(self._file.name):
            self._file.flush()

    def finish(self, extra: dict) -> dict:
        """Close the metrics file and write summary.json, last.

        The top level holds what the caller states about the finished run (the
        certificate, the test metrics, the plan); the last value of every logged key,
        wandb's summary, is kept apart under `last_logged`, where a value such as the
        fine-tuning's `sigma_t: 0.0` cannot be mistaken for the run's noise."""
        with naming(self._file.name):
            self._file.close()
        summary = {**to_builtin(extra), "last_logged": dict(self.summary), "run_id": self.run_id, "finished": True}
        if self._wandb is not None:
            for key, value in extra.items():
                self._wandb.summary[key] = to_builtin(value)
            self._wandb.finish()
            self._wandb = None
        write_json_atomic(self.run_dir / "summary.json", summary)
        return summary

    def close(self) -> None:
        """After a failure: release the file and wandb, whatever else went wrong (closing
        flushes, which fails again on a full disk)."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass
        if self._wandb is not None:
            wandb, self._wandb = self._wandb, None
            wandb.finish(exit_code=1)


def _start_wandb(wandb_config, config: dict, run_id: str):
    try:
        import wandb
    except ImportError:
        from src.errors import ConfigError

        raise ConfigError(f"wandb.mode: '{wandb_config.mode}' needs the wandb package: pip install wandb==0.31.0") from None
    Path(wandb_config.log_dir).mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(project=wandb_config.project, entity=wandb_config.entity, config=config,
                          dir=wandb_config.log_dir, mode=wandb_config.mode, name=run_id, reinit="finish_previous")
    except wandb.Error as e:  # a refused key, no network...: the user's to fix, in one line
        from src.errors import ConfigError

        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(f"wandb.mode: '{wandb_config.mode}': wandb could not start ({first}); check the key "
                          "(`wandb login`) and the network, or use wandb.mode: offline") from None


def fmt(value) -> str:
    """Compact numbers for stdout."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

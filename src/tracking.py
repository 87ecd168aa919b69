"""RunLogger: every metric to logs/<run>/metrics.jsonl, and to wandb when it is enabled.

The JSONL file is the source of truth (figures read it, offline); wandb is an optional
sink (`wandb.mode`: disabled by default, offline or online). Keys are the reference's
(the original code), one JSON object per log call, like a wandb row.

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
from decimal import ROUND_CEILING, Decimal
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


class TaggedLogger:
    """A run's logger that adds fixed keys to every row: an ensemble member's index
    (`member`), a stream's request (`request`)."""

    def __init__(self, logger, **tags):
        self.logger = logger
        self.tags = tags

    def log(self, row: dict) -> None:
        self.logger.log({**row, **self.tags})

    def flush(self) -> None:
        self.logger.flush()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`data` to `path` whole or not at all: written beside it, flushed to disk, then renamed
    over it. A failed write (disk full) leaves nothing behind and its OSError names `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, data) -> None:
    write_bytes_atomic(path, dumps(data, indent=2, sort_keys=True).encode())


class RunDirectory:
    """logs/<run_id>, built in logs/<run_id>.partial-<pid> until the run finishes.

    `create` first claims the run (src/claims.py): a second process asked for the same run
    while this one computes it is refused before it computes anything. `commit` puts the
    finished run in place under a commit lock, in one atomic exchange where the file
    system allows it, so that two processes finishing the same run at once (one not using
    claims, or --force twice) leave one whole result and no debris."""

    def __init__(self, logs_dir: str | Path, run_id: str, claim: bool = True, what: str = "experiment.py"):
        self.logs_dir = Path(logs_dir)
        self.run_id = run_id
        self.final = self.logs_dir / run_id
        self.staging = self.logs_dir / f"{run_id}.partial-{os.getpid()}"
        self._want_claim = claim
        self._what = what
        self._claim = None

    def create(self) -> Path:
        self._made_logs_dir = not self.logs_dir.exists()  # then a failed run removes it again
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self._want_claim:
            self._claim = self._take_claim()
        try:
            self._remove_stale_partials()
            if self.staging.exists():
                shutil.rmtree(self.staging)
            (self.staging / "ckpt").mkdir(parents=True)
        except BaseException:
            self._release()  # a full disk, say: the run did not start, so it is nobody's
            raise
        return self.staging

    def _take_claim(self):
        from src import claims

        claim = claims.adopt_or_claim(self.final, self._what)
        if claim is None and claims.SUBMITTING in (claims.holder(self.final) or ""):
            # the launcher that submitted this very job lets go as soon as sbatch returns
            claim = claims.try_claim(self.final, self._what, wait_seconds=120)
        if claim is None:
            from src.errors import UserError

            who = claims.holder(self.final) or "another process (it has just finished)"
            raise UserError(f"run {self.run_id} is being computed by {who}; this one did not start "
                            f"(claim file {claims.claim_path(self.final)}). Wait for it, or stop that process")
        return claim

    def commit(self) -> Path:
        """Move the finished run into place; the old result, if any, goes only then."""
        from src import claims

        with claims.try_claim(self.logs_dir / f"{self.run_id}.commit", f"committing {self.run_id}",
                              wait_seconds=None):
            if self.final.exists() and _exchange(self.staging, self.final):
                shutil.rmtree(self.staging, ignore_errors=True)  # now the old result
            else:
                trash = None
                if self.final.exists():
                    trash = self.logs_dir / f".trash-{self.run_id}-{os.getpid()}"
                    os.replace(self.final, trash)
                os.replace(self.staging, self.final)
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)
        self._release()
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()
        if getattr(self, "_made_logs_dir", False):
            # only if empty: another run may have written there since
            for folder in (self.logs_dir / ".claims", self.logs_dir):
                try:
                    folder.rmdir()
                except OSError:
                    pass

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def _remove_stale_partials(self) -> None:
        """Leftovers of killed attempts. Under the claim nobody else computes this run, so
        every other staging directory is stale, whichever host left it (a pid says nothing
        about another host); without a claim, only those of processes dead on this host."""
        for pattern in (f"{self.run_id}.partial-*", f".trash-{self.run_id}-*"):
            for path in self.logs_dir.glob(pattern):
                pid = path.name.rsplit("-", 1)[-1]
                if path == self.staging or not pid.isdigit():
                    continue
                if self._claim is not None or not _alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2); False where that is not
    available, and the caller falls back to two renames under its lock."""
    if _renameat2 is None:
        return False
    return _renameat2(-100, os.fsencode(a), -100, os.fsencode(b), _RENAME_EXCHANGE) == 0  # -100: AT_FDCWD


def _load_renameat2():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _load_renameat2()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def member_summaries(summary: dict) -> list[dict]:
    """The summaries of an ensemble's members (`seeds: N`), each as the summary of the
    single run the member is (its run id, its results; `member` and `ensemble_run_id` say
    where it came from); a single run's summary as it is."""
    members = summary.get("members")
    if not isinstance(members, list):
        return [summary]
    shared = {k: v for k, v in summary.items()
              if k not in ("members", "member_stats", "last_logged", "seeds", "run_id", "timings")}
    return [{**shared, **member, "ensemble_run_id": summary.get("run_id"), "finished": summary.get("finished")}
            for member in members if isinstance(member, dict)]


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


def fmt_up(value) -> str:
    """A bound for the console: 4 significant digits, rounded up (never below the value)."""
    if value is None:
        return "-"
    exact = Decimal(repr(float(value)))
    if not exact.is_finite() or exact == 0:
        return str(value)
    quantum = Decimal(1).scaleb(exact.adjusted() - 3)
    return f"{exact.quantize(quantum, rounding=ROUND_CEILING).normalize():g}"

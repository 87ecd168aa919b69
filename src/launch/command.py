"""The command line of one job and its log file.

Stdlib only, on purpose: the submitit backend pickles `run_logged` by value, so a Slurm
job needs neither this repository on its PYTHONPATH nor torch to start it.

A log file is framed by two launcher lines, so that a log says what ran and how it
ended even when the process printed nothing:

    [run_exp] /path/python experiment.py --config 'exps/a b.yaml' --max-threads 2
    [run_exp] slurm job 812_3 on node17          (in a Slurm job: whose log this is)
    ... everything the run printed (stdout and stderr) ...
    [run_exp] stopped: time limit (--time 60 min)   (when it was stopped, why)
    [run_exp] exit code 0 after 4.2 s
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

MARK = "[run_exp]"
_FOOTER = re.compile(r"^\[run_exp\] exit code (-?\d+) after ([0-9.]+) s$")
_JOB = re.compile(r"^\[run_exp\] slurm job (\S+) on ")
_STOPPED = re.compile(r"^\[run_exp\] stopped: (.+)$")


def experiment_command(experiment_py: str | Path, config: str | Path, *, pretrain_only: bool = False,
                       threads: int | None = None, python: str | None = None) -> list[str]:
    """An argv list, never a string: paths with spaces stay one argument. `threads` is the
    job's share of the cores: a ceiling, below which experiment.py sizes its threads to
    the model (a tiny network takes one thread even when its share is more)."""
    argv = [python or sys.executable, str(experiment_py), "--config", str(config)]
    if pretrain_only:
        argv.append("--pretrain-only")
    if threads:
        argv += ["--max-threads", str(threads)]
    return argv


def thread_env(threads: int | None) -> dict:
    """Also cap OpenMP/MKL, which torch.set_num_threads alone does not reach at import
    (src/threads.py reads them as a ceiling too)."""
    if not threads:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def child_env(updates: dict) -> dict:
    env = dict(os.environ)
    env.update(updates)
    env["PYTHONUNBUFFERED"] = "1"  # the log fills as the run goes, and is complete if it is killed
    return env


def open_log(path: str | Path, argv: list[str], env_updates: dict, slurm_job: str | None = None):
    """A fresh log (an earlier attempt's is replaced), headed by the command (and, in a
    Slurm job, the job id: the launcher then knows the log is this job's, not an older one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env_updates.items()) if k == "CUDA_VISIBLE_DEVICES")
    handle.write(f"{MARK} {(shown + ' ') if shown else ''}{shlex.join(argv)}\n")
    if slurm_job:
        handle.write(f"{MARK} slurm job {slurm_job} on {os.uname().nodename}\n")
    handle.flush()
    return handle


def reset_log(path: str | Path, note: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{MARK} {note}\n")


def close_log(path: str | Path, exit_code: int, seconds: float, stopped: str | None = None) -> None:
    with open(path, "a") as handle:
        if stopped:
            handle.write(f"\n{MARK} stopped: {stopped}")
        handle.write(f"\n{MARK} exit code {exit_code} after {seconds:.1f} s\n")


def read_header_job(path: str | Path) -> str | None:
    """The Slurm job id a log belongs to (its second line), or None."""
    try:
        with open(path, errors="replace") as handle:
            head = [handle.readline() for _ in range(2)]
    except OSError:
        return None
    match = _JOB.match(head[1].strip()) if len(head) > 1 else None
    return match.group(1) if match else None


def read_stopped(path: str | Path) -> str | None:
    """Why the launcher's job body stopped the run (a time limit), or None."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-4:]
    except OSError:
        return None
    for line in lines:
        match = _STOPPED.match(line.strip())
        if match:
            return match.group(1)
    return None


def read_outcome(path: str | Path) -> tuple[int | None, float | None]:
    """(exit code, seconds) from a log's footer; (None, None) while running or if killed."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in reversed(lines[-3:]):
        match = _FOOTER.match(line.strip())
        if match:
            return int(match.group(1)), float(match.group(2))
    return None, None


def error_excerpt(text: str, max_lines: int = 5) -> list[str]:
    """The lines that say why a run failed: from its last `error:` line if that is near the
    end (a config error lists one key per line), otherwise the last line (the exception of
    a traceback, or the last thing printed)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip() and not line.startswith(MARK)]
    if not lines:
        return []
    tail = lines[-max_lines:]
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].lstrip().startswith("error:"):
            return tail[i:]
    return [lines[-1]]


def log_excerpt(path: str | Path, max_lines: int = 5) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return error_excerpt(text[-20000:], max_lines)


def slurm_job_id() -> str | None:
    """This process's Slurm job, as squeue names it: '<array>_<index>' for an array task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def run_logged(argv: list[str], log: str, cwd: str, env_updates: dict, time_limit_s: float | None = None) -> float:
    """Run one job to completion with its output in `log` (the submitit job body).

    Raises on a non-zero exit so that the scheduler marks the job failed and Slurm's
    afterok dependencies do not release its dependents. The run gets `time_limit_s` (the
    launcher's --time) and is then stopped with SIGINT, which drops its staging directory,
    and the log says "stopped: time limit". If the job itself is interrupted (Slurm's
    signal before its own limit, a cancellation), the run gets SIGINT the same way. The
    run also dies with this process (die_with_parent)."""
    start = time.monotonic()
    job = slurm_job_id()
    handle = open_log(log, argv, env_updates, slurm_job=job)
    try:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                   env=child_env(env_updates), preexec_fn=die_with_parent())
    finally:
        handle.close()
    stopped = None
    try:
        try:
            code = process.wait(timeout=time_limit_s)
        except subprocess.TimeoutExpired:
            stopped = f"time limit (--time {time_limit_s / 60:g} min)"
            stop_gently(process)
            code = process.returncode
    except BaseException as e:  # submitit turns Slurm's USR2 into an exception here
        stop_gently(process)
        close_log(log, process.returncode, time.monotonic() - start,
                  stopped=f"the Slurm job was stopped ({type(e).__name__}: {e})")
        raise
    seconds = time.monotonic() - start
    close_log(log, code, seconds, stopped=stopped)
    if stopped:
        raise RuntimeError(f"stopped: {stopped} (log: {log})")
    if code != 0:
        excerpt = log_excerpt(log)
        raise RuntimeError(f"exit code {code}: {excerpt[-1] if excerpt else 'no output'} (log: {log})")
    return seconds


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGINT):
    """A Popen preexec_fn that ties the child to this process: when this process dies,
    however it dies (SIGKILL too), the kernel sends the child `sig` (Linux prctl
    PR_SET_PDEATHSIG). SIGINT by default: experiment.py then drops its staging directory
    and exits. None where prctl does not exist (the child then outlives a killed parent)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: do not outlive it
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def stop_gently(process, grace_seconds: float = 20.0) -> None:
    """SIGINT (experiment.py then abandons its staging directory), SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

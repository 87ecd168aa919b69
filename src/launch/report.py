"""What the launcher prints: the plan of a dry run, the progress line and the final table."""

from __future__ import annotations

import sys
import time
from collections import Counter

from src.launch.plan import BLOCKED, FAILED, INTERRUPTED, OK, PENDING, RUNNING, SKIPPED, Job

STATUS_LABEL = {OK: "ok", FAILED: "FAILED", BLOCKED: "BLOCKED", SKIPPED: "skipped",
                INTERRUPTED: "interrupted", PENDING: "not run", RUNNING: "running"}


def format_duration(seconds: float | None) -> str:
    """0:07, 12:34, 1:02:03; '?' when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def estimate_remaining(durations: list[float], running_elapsed: list[float], left: int, workers: int) -> float | None:
    """Seconds until all is done, from the mean duration of the jobs finished so far: the
    rest of the running jobs plus the ones left, spread over the workers. None before the
    first job has finished (there is nothing to go on)."""
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    work = left * mean + sum(max(mean - e, 0.0) for e in running_elapsed)
    busy = min(max(workers, 1), max(left + len(running_elapsed), 1))
    return work / busy


def progress_line(counts: Counter, elapsed: float, eta: float | None) -> str:
    done = counts[OK]
    failed = counts[FAILED] + counts[BLOCKED]
    total = done + failed + counts[RUNNING] + counts[PENDING]
    eta_text = "done" if not counts[RUNNING] and not counts[PENDING] else f"~{format_duration(eta)} left"
    return (f"[{done + failed}/{total}] {done} done, {counts[RUNNING]} running, {failed} failed, "
            f"{counts[PENDING]} left | {format_duration(elapsed)} elapsed, {eta_text}")


class ProgressDisplay:
    """One progress line: redrawn in place on a terminal; elsewhere (a log file, CI) printed
    on each change of the counts and at most every `interval` seconds otherwise."""

    def __init__(self, stream=None, is_tty: bool | None = None, interval: float = 10.0):
        self.stream = stream or sys.stderr
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        self.interval = interval
        self._last_line = ""
        self._last_print = 0.0
        self._shown = False

    def update(self, line: str) -> None:
        now = time.monotonic()
        if self.is_tty:
            if line != self._last_line:
                self.stream.write("\r\x1b[K" + line)
                self.stream.flush()
                self._shown = True
        elif self._changed(line) or now - self._last_print >= self.interval:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_print = now
        self._last_line = line

    def _changed(self, line: str) -> bool:
        # the counts are the part before '|'; the clock alone is not news
        return line.split("|")[0] != self._last_line.split("|")[0]

    def event(self, text: str) -> None:
        """A line of its own (a job ended); the next update draws the progress line again."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = ""

    def close(self) -> None:
        self._clear()
        self.stream.flush()

    def _clear(self) -> None:
        if self.is_tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False


def job_event(job: Job) -> str:
    text = f"{STATUS_LABEL[job.status]:>7}  {job.name}"
    if job.seconds is not None:
        text += f"  ({job.seconds:.1f}s)"
    if job.status in (FAILED, BLOCKED, SKIPPED) and job.detail:
        text += f": {job.detail[-1] if job.status == FAILED else job.detail[0]}"
    return text


# ---------------------------------------------------------------------------------------
# The final table


def render_table(jobs: list[Job], elapsed: float, interrupted: bool = False) -> str:
    shown = [job for job in jobs if job.status != PENDING]
    name_width = min(max([len(job.name) for job in shown] + [3]), 60)
    rows = [f"{'status':<11} {'time':>8}  {'run':<{name_width}}  detail"]
    indent = " " * (11 + 1 + 8 + 2 + name_width + 2)
    for job in shown:
        detail = list(job.detail) or [""]
        if job.status == FAILED:
            detail.append(f"log: {job.log}")
        time_text = f"{job.seconds:.1f}s" if job.seconds is not None else "-"
        rows.append(f"{STATUS_LABEL[job.status]:<11} {time_text:>8}  {job.name:<{name_width}}  {detail[0]}".rstrip())
        rows.extend(indent + line for line in detail[1:])
    rows.append(summary_line(jobs, elapsed, interrupted))
    return "\n".join(rows)


def summary_line(jobs: list[Job], elapsed: float, interrupted: bool = False) -> str:
    counts = Counter(job.status for job in jobs)
    parts = [f"{counts[status]} {STATUS_LABEL[status].lower()}"
             for status in (OK, FAILED, BLOCKED, SKIPPED, INTERRUPTED, PENDING) if counts[status]]
    text = f"{', '.join(parts) or 'nothing to do'} in {format_duration(elapsed)}"
    if interrupted:
        text += " (interrupted: run again to finish what is missing)"
    return text


def render_plan(jobs: list[Job], warnings: list[str], workers_text: str) -> str:
    """The --dry-run listing: what would run, in which order, and what is skipped and why."""
    rows = []
    for job in jobs:
        if job.kind == "pretrain":
            rows.append(f"pretrain  {job.name[len('pretrain '):]}  for {job.users} run(s), with {job.config}  "
                        f"(log: {job.log})")
    for job in jobs:
        if job.kind != "run":
            continue
        if job.status == PENDING:
            after = "".join(f"  after {dep.name}" for dep in job.deps)
            rows.append(f"run       {job.name}  -> {job.info.run_dir}{after}")
        elif job.status == SKIPPED:
            rows.append(f"skip      {job.name}  {job.detail[0]}")
        else:
            rows.append(f"invalid   {job.name}  {job.detail[0]}")
            rows.extend(f"          {line}" for line in job.detail[1:])
    rows.extend(f"warning: {text}" for text in warnings)
    counts = Counter((job.kind, job.status) for job in jobs)
    rows.append(f"would pretrain {counts['pretrain', PENDING]}, run {counts['run', PENDING]} on {workers_text}; "
                f"skip {counts['run', SKIPPED]}; invalid {counts['run', FAILED] + counts['run', BLOCKED]}")
    return "\n".join(rows)


def exit_code(jobs: list[Job], signal_number: int | None = None) -> int:
    """128 + the signal when interrupted (the shell convention), 1 if any job failed."""
    if signal_number:
        return 128 + signal_number
    return 1 if any(job.status in (FAILED, BLOCKED) for job in jobs) else 0

"""The local backend: a queue of jobs over GPU or CPU slots, one child process per job.

Each child runs in its own session (process group), so that the launcher decides what a
Ctrl-C means: on SIGINT or SIGTERM it forwards SIGINT to every running run, whose
experiment.py then drops its staging directory and exits; a run that does not stop within
the grace period is killed (its `.partial-<pid>` directory is removed by the next run of
the same config). Finished results are whole or absent, so running the launcher again
completes exactly what is missing.

Children die with the launcher: each gets SIGINT from the kernel when the launcher dies,
even by SIGKILL (command.die_with_parent). Launchers do not collide: a job is started only
under its claim (src/claims.py), taken just before it starts and handed to the child, so a
second launcher on the same folder skips the runs the first one is computing (and says
by whom), waits for a pretraining the other one is training, and never opens their logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from src import claims
from src.launch import command
from src.launch.plan import (BLOCKED, FAILED, INTERRUPTED, OK, PENDING, RUNNING, SKIPPED, Job, block_dependents,
                             claim_target, skip_dependents)
from src.launch.report import ProgressDisplay, estimate_remaining, job_event, progress_line


@dataclass(frozen=True)
class Slot:
    label: str          # "gpu 3" or "cpu 1"
    cuda_devices: str   # the job's CUDA_VISIBLE_DEVICES: one GPU id, or "" to hide all GPUs
    threads: int        # the job's torch threads


def make_slots(n_gpus: int, offset: int, jobs_per_slot: int, cores: int) -> list[Slot]:
    """GPU ids offset..offset+n-1, each `jobs_per_slot` times (the reference's pool), listed
    round-robin so that the first jobs land on different GPUs; with no GPU, `jobs_per_slot`
    CPU workers. The cores are shared out so that workers do not oversubscribe the CPU."""
    jobs_per_slot = max(1, jobs_per_slot)
    count = n_gpus * jobs_per_slot if n_gpus > 0 else jobs_per_slot
    threads = max(1, cores // count)
    if n_gpus > 0:
        gpus = [offset + i for i in range(n_gpus)]
        return [Slot(f"gpu {g}", str(g), threads) for _ in range(jobs_per_slot) for g in gpus]
    return [Slot(f"cpu {i}", "", threads) for i in range(jobs_per_slot)]


@dataclass
class _Running:
    process: object
    slot: Slot
    start: float
    claim: object


class LocalScheduler:
    def __init__(self, jobs: list[Job], slots: list[Slot], experiment_py: Path, cwd: Path,
                 display: ProgressDisplay, poll_seconds: float = 0.2, grace_seconds: float = 20.0,
                 force: bool = False):
        self.jobs = jobs
        self.free = list(slots)
        self.workers = len(slots)
        self.experiment_py = experiment_py
        self.cwd = cwd
        self.display = display
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.running: dict[Job, _Running] = {}
        self.signal_number: int | None = None
        self.signals_received = 0
        self.start = time.monotonic()
        self.force = force
        self.waiting_on: dict[Job, str] = {}  # a pretraining another process is training: who

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int | None:
        """Run every pending job; returns the signal number if interrupted."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                self._reap()
                if self.signal_number is not None:
                    self._terminate_all()
                    break
                self._block_orphans()
                self._start_ready()
                if not self.running and not self.waiting_on:
                    if not any(job.status == PENDING for job in self.jobs):
                        break
                    self._block_cycle()  # pending, yet nothing runs, waits or can start
                    continue
                self.display.update(self.progress())
                time.sleep(self.poll_seconds)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.display.close()
        return self.signal_number

    def _on_signal(self, signum, frame) -> None:
        # Only note it: the loop stops the children. A second Ctrl-C skips the grace period.
        self.signals_received += 1
        if self.signal_number is None:
            self.signal_number = signum

    def progress(self) -> str:
        counts = Counter(job.status for job in self.jobs)
        durations = [job.seconds for job in self.jobs if job.status in (OK, FAILED) and job.seconds is not None]
        now = time.monotonic()
        elapsed = [now - r.start for r in self.running.values()]
        eta = estimate_remaining(durations, elapsed, counts[PENDING], self.workers)
        return progress_line(counts, now - self.start, eta)

    # -- starting ----------------------------------------------------------------------

    def _start_ready(self) -> None:
        for job in self.jobs:
            if not self.free:
                return
            if job.status == PENDING and all(dep.status == OK for dep in job.deps):
                claim = self._claim(job)
                if claim is not None:
                    self._start(job, self.free.pop(0), claim)

    def _claim(self, job: Job):
        """The job's claim, or None: then the job is skipped (a run someone else computes or
        has just finished), done (a pretraining someone else has just cached), or waits (a
        pretraining someone else trains now)."""
        target = claim_target(job)
        try:
            claim = claims.try_claim(target, f"run_exp.py, {job.name}")
        except OSError as e:  # its folder cannot be written (made read-only or a file since planning)
            self._finish(job, FAILED, None, [f"error: cannot claim {target}: {e.strerror or e}"])
            self._block_orphans()
            return None
        if claim is None:
            who = claims.holder(target) or "another process"
            if job.kind == "pretrain":
                if job not in self.waiting_on:
                    self.display.event(f"waiting  {job.name}: trained now by {who}")
                self.waiting_on[job] = who
            else:
                self._finish(job, SKIPPED, None, [f"claimed by {who}: computed there, not here"])
                self._skip_dependents()
            return None
        self.waiting_on.pop(job, None)
        if job.kind == "pretrain" and job.info.pretrain_model.is_file():
            claim.release()
            self._finish(job, OK, None, [str(job.info.pretrain_model), "trained meanwhile by another process"])
            return None
        if job.kind == "run" and not self.force and (job.info.run_dir / "summary.json").is_file():
            claim.release()
            self._finish(job, SKIPPED, None, [f"finished meanwhile by another process: {job.info.run_dir}"])
            self._skip_dependents()
            return None
        return claim

    def _start(self, job: Job, slot: Slot, claim) -> None:
        argv = command.experiment_command(self.experiment_py, job.config, pretrain_only=job.kind == "pretrain",
                                          threads=slot.threads)
        env_updates = {"CUDA_VISIBLE_DEVICES": slot.cuda_devices, **command.thread_env(slot.threads)}
        handed_down = job.kind == "run"  # experiment.py adopts the claim of its run (not of a pretraining)
        env = command.child_env(env_updates)
        if handed_down:
            env[claims.CLAIM_FD_ENV] = str(claim.fileno())
        log = command.open_log(job.log, argv, env_updates)
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=env,
                                       start_new_session=True, preexec_fn=command.die_with_parent(),
                                       pass_fds=(claim.fileno(),) if handed_down else ())
        except OSError as e:
            log.write(f"error: could not start: {e}\n")
            log.close()
            claim.release()
            self._finish(job, FAILED, 0.0, [f"error: could not start: {e}"])
            self.free.append(slot)
            return
        log.close()  # the child holds its own descriptor
        job.status = RUNNING
        self.running[job] = _Running(process, slot, time.monotonic(), claim)

    # -- finishing ---------------------------------------------------------------------

    def _reap(self) -> None:
        for job, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            seconds = time.monotonic() - run.start
            command.close_log(job.log, code, seconds)
            run.claim.release()  # after the footer: whoever claims next finds the log complete
            del self.running[job]
            self.free.append(run.slot)
            if code == 0:
                self._finish(job, OK, seconds, self._result_detail(job))
            else:
                status = INTERRUPTED if self.signal_number is not None else FAILED
                excerpt = command.log_excerpt(job.log) or [f"exit code {code}, no output"]
                self._finish(job, status, seconds, excerpt)

    def _result_detail(self, job: Job) -> list[str]:
        if job.kind == "pretrain":
            return [str(job.info.pretrain_model)]
        return [str(job.info.run_dir)]

    def _finish(self, job: Job, status: str, seconds: float, detail: list[str]) -> None:
        job.status, job.seconds, job.detail = status, seconds, detail
        self.display.event(job_event(job))

    def _block_orphans(self) -> None:
        for job in block_dependents(self.jobs):
            self.display.event(job_event(job))

    def _skip_dependents(self) -> None:
        for job in skip_dependents(self.jobs):
            self.display.event(job_event(job))

    def _block_cycle(self) -> None:
        for job in self.jobs:
            if job.status == PENDING:
                job.status = BLOCKED
                job.detail = ["blocked: waits for a checkpoint that depends on itself (a cycle)"]

    # -- stopping ----------------------------------------------------------------------

    def _terminate_all(self) -> None:
        """SIGINT to each running job's process group, then SIGKILL after the grace period
        (or at once on a second signal)."""
        if not self.running:
            return
        self.display.event(f"stopping {len(self.running)} running job(s) (signal {self.signal_number}); "
                           f"their partial results are dropped")
        for run in self.running.values():
            _signal_group(run.process, signal.SIGINT)
        deadline = time.monotonic() + self.grace_seconds
        while self.running and time.monotonic() < deadline and self.signals_received < 2:
            time.sleep(0.1)
            self._reap()
        for run in self.running.values():
            _signal_group(run.process, signal.SIGKILL)
        for run in self.running.values():
            run.process.wait()
        self._reap()
        self.waiting_on.clear()


def _signal_group(process, sig) -> None:
    try:
        os.killpg(process.pid, sig)  # the child leads its own session: this reaches its children too
    except (ProcessLookupError, PermissionError):
        pass

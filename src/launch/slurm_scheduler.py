"""Submitting to a real Slurm cluster, and following the jobs to the end.

Submitting. Everything is submitted at once: the pretrainings, then the runs as job arrays
grouped by what they wait for (`--dependency=afterok:<ids>`, `--kill-on-invalid-dep=yes`),
each array cut to the cluster's MaxArraySize. A job is submitted under its claim
(src/claims.py), held only while sbatch runs: a second launcher skips what another is
submitting or computing. Its job id is recorded next to its log (`<log stem>.job`), so
that running the same command again (after --no-wait, a lost connection, a killed
launcher) reattaches to the jobs still queued or running instead of submitting them twice.
If sbatch refuses an array, the jobs submitted before it are cancelled: nothing runs
unwatched, and no log of a run that was never submitted is touched.

Following. squeue (and sacct where accounting exists) say how each job stands; a job Slurm
no longer knows has ended. The outcome is the footer of the job's own log (the log names
its job id, so an older attempt's log is never taken for this one's), with Slurm's state
for what the log cannot say: "time limit", "cancelled". When a job fails, the jobs
waiting for it are marked blocked at once and cancelled (Slurm would keep some of them
pending forever, as DependencyNeverSatisfied). Ctrl-C cancels the jobs this launcher
submitted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from src import claims
from src.launch import command, slurm_cli
from src.launch.plan import (BLOCKED, FAILED, INTERRUPTED, OK, PENDING, RUNNING, SKIPPED, Job, block_dependents,
                             block_reason, claim_target, dependency_levels, skip_dependents)
from src.launch.report import ProgressDisplay, estimate_remaining, job_event, progress_line
from src.launch.slurm import (SLURM_MARGIN_MIN, SlurmOptions, _id_range, _pickle_job_body_by_value, dependency_groups, job_arguments,
                              make_executor)

VISIBLE_AFTER_S = 30  # a job just submitted that squeue does not list yet is not taken for ended


class SubmissionFailed(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Records: which Slurm job computes which run


def record_path(job: Job) -> Path:
    return job.log.with_suffix(".job")


def write_record(job: Job, job_id: str) -> None:
    path = record_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"job_id": job_id, "kind": job.kind, "target": str(claim_target(job)),
                               "submitted": time.time(), "by": f"pid {os.getpid()} on {socket.gethostname()}"}))
    os.replace(tmp, path)


def read_record(job: Job) -> dict | None:
    try:
        record = json.loads(record_path(job).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("job_id"), str) else None


def drop_record(job: Job, job_id: str) -> None:
    record = read_record(job)
    if record is not None and record["job_id"] == job_id:
        record_path(job).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------


class _Unclaimed:
    """A pretraining someone else holds: submitted anyway (its job waits for the cache's
    lock on the cluster, then reuses the model), with nothing to release."""

    def release(self) -> None:
        pass


class SlurmScheduler:
    def __init__(self, jobs: list[Job], options: SlurmOptions, experiment_py: Path, cwd: Path,
                 display: ProgressDisplay):
        self.jobs = jobs
        self.options = options
        self.experiment_py = experiment_py
        self.cwd = cwd
        self.display = display
        self.job_ids: dict[Job, str] = {}     # every job followed, in submission order
        self.ours: set[Job] = set()           # submitted by this launcher (Ctrl-C cancels these)
        self.started: dict[Job, float] = {}
        self.signal_number: int | None = None
        self.failure: str | None = None       # why the submission stopped (sbatch refused)
        self.start = time.monotonic()
        self.wall_start = time.time()

    def run(self) -> int | None:
        _pickle_job_body_by_value()
        executor = make_executor(self.options)
        waves = dependency_levels(self.jobs)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._reattach([job for wave in waves for job in wave])
                for wave in waves:
                    self._submit_wave(executor, wave)
                    if self.signal_number is not None:
                        break
            except SubmissionFailed as e:
                self._undo_submissions(str(e))
            if self.failure is None and self.options.wait and self.signal_number is None:
                self._follow()
            if self.signal_number is not None:
                self._cancel_ours()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.signal_number is None and self.failure is None:
            self._block_orphans()
        self.display.close()
        return self.signal_number

    def _on_signal(self, signum, frame) -> None:
        if self.signal_number is None:
            self.signal_number = signum

    def submitted_summary(self) -> str:
        """For --no-wait: what is in the queue now."""
        ours = sorted(self.job_ids[job] for job in self.ours)
        again = [self.job_ids[job] for job in self.job_ids if job not in self.ours and job.status == RUNNING]
        runs = sum(job.kind == "run" and job.status == RUNNING for job in self.job_ids)
        text = f"{runs} run(s) queued or running on Slurm"
        if ours:
            text += f"; submitted now: {len(ours)} job(s) ({_id_text(ours)})"
        if again:
            text += f"; submitted earlier and still there: {len(again)} ({_id_text(again)})"
        return text

    # -- reattaching -------------------------------------------------------------------

    def _reattach(self, pending: list[Job]) -> None:
        """Jobs recorded by an earlier launcher and still queued or running are followed,
        not submitted again."""
        records = {job: record for job in pending if (record := read_record(job)) is not None}
        if not records:
            return
        states = slurm_cli.job_states([r["job_id"] for r in records.values()], self.options.accounting)
        if states is None:
            raise SubmissionFailed("squeue failed: cannot tell which of the jobs recorded under the run logs "
                                   "are still queued; nothing was submitted")
        for job, record in records.items():
            self._adopt_if_live(job, record, states.get(record["job_id"]))

    def _adopt_if_live(self, job: Job, record: dict, state) -> bool:
        if state is None or not state.active:
            drop_record(job, record["job_id"])  # it has ended (unwatched): say how, then it goes again
            ended = state.describe() if state is not None else "ended (no longer known to Slurm)"
            self.display.event(f"earlier  {job.name}: Slurm job {record['job_id']} {ended.lower()}; not finished, "
                               f"so it is submitted again")
            return False
        if record.get("target") != str(claim_target(job)):
            job.status = FAILED
            job.detail = [f"Slurm job {record['job_id']} (submitted earlier for this config, when it described "
                          f"{Path(record.get('target', '?')).name}) is still {state.state.lower()} and writes the same "
                          f"log: scancel {record['job_id']}, or wait for it, then run this again"]
            self.display.event(job_event(job))
            return False
        job.status = RUNNING
        self.job_ids[job] = record["job_id"]
        self.started[job] = time.monotonic()
        self.display.event(f"following  {job.name}: Slurm job {record['job_id']} ({state.describe().lower()}), "
                           f"submitted earlier")
        return True

    # -- submitting --------------------------------------------------------------------

    def _submit_wave(self, executor, wave: list[Job]) -> None:
        self._skip_dependents()
        ready = [job for job in wave if job.status == PENDING]
        for extra, group in dependency_groups(ready, self.job_ids):
            self._submit_group(executor, extra, group)

    def _submit_group(self, executor, extra: dict, group: list[Job]) -> None:
        """The claimed jobs of a group, as job arrays of at most MaxArraySize tasks."""
        limit = max(1, self.options.max_array_size)
        held: list[tuple[Job, object]] = []
        try:
            for job in group:
                claim = self._claim(job)
                if claim is not None:
                    held.append((job, claim))
                if len(held) == limit:
                    self._submit_array(executor, extra, held)
                    held = []
            if held:
                self._submit_array(executor, extra, held)
                held = []
        finally:
            for _, claim in held:
                claim.release()

    def _submit_array(self, executor, extra: dict, held: list[tuple[Job, object]]) -> None:
        try:
            jobs = [job for job, _ in held]
            executor.update_parameters(slurm_additional_parameters=extra)
            args = [job_arguments(job, self.options, self.experiment_py, self.cwd) for job in jobs]
            try:
                submitted = executor.map_array(command.run_logged, *zip(*args))
            except Exception as e:  # sbatch's refusal, as submitit reports it
                raise SubmissionFailed(_sbatch_error(e, len(jobs))) from None
            now = time.monotonic()
            for job, sjob in zip(jobs, submitted):
                job.status = RUNNING
                self.job_ids[job] = sjob.job_id
                self.ours.add(job)
                self.started[job] = now
                write_record(job, sjob.job_id)  # before the claim goes: others find the job
            after = f", {extra['dependency']}" if extra else ""
            self.display.event(f"submitted {len(jobs)} job(s): {_id_range(submitted)}{after}")
        finally:
            for _, claim in held:
                claim.release()

    def _claim(self, job: Job):
        """The job's claim for its submission, or None when it is not to be submitted
        (someone else computes it, it has finished meanwhile, another launcher submitted it)."""
        target = claim_target(job)
        what = f"run_exp.py, {claims.SUBMITTING}"
        claim = claims.try_claim(target, what)
        if claim is None and claims.SUBMITTING in (claims.holder(target) or ""):
            claim = claims.try_claim(target, what, wait_seconds=30)  # another launcher's sbatch: then its record
        if claim is None:
            who = claims.holder(target) or "another process"
            if job.kind == "pretrain":
                self.display.event(f"note: {job.name} is claimed by {who}; submitted anyway (its job waits "
                                   f"for that training and reuses the model)")
                return _Unclaimed()
            self._finish(job, SKIPPED, [f"claimed by {who}: computed there, not here"])
            return None
        if job.kind == "pretrain" and job.info.pretrain_model.is_file():
            claim.release()
            self._finish(job, OK, [str(job.info.pretrain_model), "trained meanwhile by another process"])
            return None
        if job.kind == "run" and not self.options.force and (job.info.run_dir / "summary.json").is_file():
            claim.release()
            self._finish(job, SKIPPED, [f"finished meanwhile by another process: {job.info.run_dir}"])
            return None
        record = read_record(job)
        if record is not None and record.get("submitted", 0) >= self.wall_start:  # another launcher, just now
            states = slurm_cli.job_states([record["job_id"]], self.options.accounting) or {}
            if self._adopt_if_live(job, record, states.get(record["job_id"])) or job.status != PENDING:
                claim.release()
                return None
        return claim

    def _undo_submissions(self, error: str) -> None:
        """sbatch refused: cancel what this launcher submitted, so nothing runs unwatched."""
        ours = [job for job in self.job_ids if job in self.ours]
        ids = [self.job_ids[job] for job in ours]
        problem = slurm_cli.cancel(ids)
        for job in ours:
            drop_record(job, self.job_ids[job])
            job.status, job.detail = INTERRUPTED, ["not run: cancelled because a later submission failed"]
        self._leave_theirs()
        self.failure = error
        if ids:
            self.failure += (f"; the {len(ids)} job(s) submitted before it were cancelled ({_id_text(ids)})" if not problem
                             else f"; cancelling the {len(ids)} job(s) submitted before it failed ({problem}): "
                                  f"scancel {' '.join(ids)}")

    # -- following ---------------------------------------------------------------------

    def _follow(self) -> None:
        failures = 0
        while self.signal_number is None:
            live = [job for job in self.job_ids if job.status == RUNNING]
            if not live:
                return
            states = slurm_cli.job_states([self.job_ids[job] for job in live], self.options.accounting)
            if states is None:
                failures += 1
                if failures % 30 == 1:
                    self.display.event("warning: squeue does not answer; still waiting for the jobs")
            else:
                failures = 0
                for job in live:  # submission order: a dependency is looked at before its users
                    if job.status == RUNNING:
                        self._look_at(job, states.get(self.job_ids[job]))
                self._block_waiting_dependents()
            self.display.update(self.progress())
            if any(job.status == RUNNING for job in self.job_ids):
                time.sleep(self.options.poll_seconds)

    def _look_at(self, job: Job, state) -> None:
        job_id = self.job_ids[job]
        if state is None:
            if time.monotonic() - self.started[job] < VISIBLE_AFTER_S:
                return
            self._ended(job, None)
        elif state.active:
            if state.state == "PENDING" and state.reason in slurm_cli.NEVER:
                slurm_cli.cancel([job_id])
                self._ended(job, slurm_cli.JobState("CANCELLED", state.reason))
        else:
            self._ended(job, state)

    def _ended(self, job: Job, state) -> None:
        job_id = self.job_ids[job]
        mine = command.read_header_job(job.log) == job_id  # else: the log of an older attempt, or none
        code, seconds = command.read_outcome(job.log) if mine else (None, None)
        stopped = command.read_stopped(job.log) if mine else None
        job.seconds = seconds
        where = f"Slurm job {job_id}"
        if code == 0 and not stopped:
            self._finish(job, OK, [str(job.info.pretrain_model if job.kind == "pretrain" else job.info.run_dir)])
        elif block_reason(job):
            self._finish(job, BLOCKED, [block_reason(job)])
        elif (stopped and "time limit" in stopped) or (state is not None and state.state in ("TIMEOUT", "DEADLINE")):
            self._finish(job, FAILED, [f"{stopped}, {where}" if stopped else
                                       f"time limit: {where} reached its Slurm limit (the run's --time "
                                       f"plus {SLURM_MARGIN_MIN} min)"])
        elif state is not None and state.state == "CANCELLED":
            self._finish(job, FAILED, [f"cancelled: {where} was cancelled ({state.describe()}; scancel, or by the "
                                       f"cluster)"] + (command.log_excerpt(job.log, 2) if mine else []))
        elif code is not None:
            self._finish(job, FAILED, command.log_excerpt(job.log) or [f"exit code {code}, no output"])
        else:
            known = state.describe() if state is not None else \
                "no longer known to Slurm" + ("" if self.options.accounting else " (no accounting to ask)")
            self._finish(job, FAILED, [f"{where} ended without finishing its command: {known}"])
        if not mine:  # a fresh log that says so, instead of an older attempt's
            said = state.describe() if state else "state unknown"
            command.reset_log(job.log, f"not run: {job.detail[0]} ({where}: {said})" if job.status == BLOCKED
                              else f"{where} ended before it started its command: {said}")
        drop_record(job, job_id)

    def _block_waiting_dependents(self) -> None:
        """Jobs queued behind a failed one can no longer run: say so now, and cancel them."""
        changed = True
        while changed:
            changed = False
            for job in self.job_ids:
                reason = block_reason(job) if job.status == RUNNING else None
                if reason:  # afterok: it has not started, and never will
                    slurm_cli.cancel([self.job_ids[job]])
                    drop_record(job, self.job_ids[job])
                    command.reset_log(job.log, f"not run: {reason} (Slurm job {self.job_ids[job]} cancelled)")
                    self._finish(job, BLOCKED, [reason])
                    changed = True
        self._block_orphans()

    def _cancel_ours(self) -> None:
        live = [job for job in self.job_ids if job.status == RUNNING]
        ours = [job for job in live if job in self.ours]
        problem = slurm_cli.cancel([self.job_ids[job] for job in ours])
        self.display.event(f"cancelled {len(ours)} job(s) (signal {self.signal_number})"
                           + (f": scancel failed: {problem}" if problem else ""))
        for job in ours:
            drop_record(job, self.job_ids[job])
            job.status, job.detail = INTERRUPTED, [f"cancelled (Slurm job {self.job_ids[job]})"]
        self._leave_theirs()

    def _leave_theirs(self) -> None:
        """Jobs an earlier launcher submitted are not this one's to cancel."""
        for job in self.job_ids:
            if job.status == RUNNING and job not in self.ours:
                job.status = INTERRUPTED
                job.detail = [f"still in Slurm as job {self.job_ids[job]} (submitted earlier, not cancelled); "
                              f"run again to follow it, or scancel {self.job_ids[job]}"]

    # -- reporting ---------------------------------------------------------------------

    def _finish(self, job: Job, status: str, detail: list[str]) -> None:
        job.status, job.detail = status, detail
        self.display.event(job_event(job))

    def _block_orphans(self) -> None:
        for job in block_dependents(self.jobs):
            self.display.event(job_event(job))

    def _skip_dependents(self) -> None:
        for job in skip_dependents(self.jobs):
            self.display.event(job_event(job))

    def progress(self) -> str:
        counts = Counter(job.status for job in self.jobs)
        durations = [job.seconds for job in self.jobs if job.status in (OK, FAILED) and job.seconds]
        now = time.monotonic()
        running = [now - self.started[job] for job in self.job_ids if job.status == RUNNING]
        eta = estimate_remaining(durations, running, counts[PENDING], self.options.array_parallelism)
        return progress_line(counts, now - self.start, eta)


def _id_text(ids: list[str]) -> str:
    return " ".join(ids) if len(ids) <= 6 else f"{ids[0]} .. {ids[-1]}"


def _sbatch_error(error: Exception, count: int) -> str:
    """sbatch's own words (submitit wraps them in its exception's text)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if "error" in line.lower()] or lines[-1:] or [type(error).__name__]
    return f"sbatch refused a job array of {count} run(s): {' / '.join(said[-2:])}"

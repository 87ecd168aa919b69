"""The submitit side of `--backend slurm`: executors, the job body, job arrays.

Each job is the same experiment.py command as locally, run by `command.run_logged` inside
a submitit job. On a real Slurm cluster (`--cluster slurm`) the jobs are submitted and
followed by slurm_scheduler.SlurmScheduler. submitit's `local` and `debug` executors, for
testing on one machine, have no dependencies: SubmititScheduler below submits the waves
one after the other, each once the previous one has finished. The local executor gives
every job the same first GPUs, so it is meant for testing, not for sharing a GPU box (use
--backend local).

--time is the run's own limit: the job body stops the run after it (and the log says
"stopped: time limit"). The job itself asks Slurm for SLURM_MARGIN_MIN minutes more,
because submitit has Slurm signal the job 90 s before its end (--signal=USR2@90) and the
run needs a moment to start and to stop.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from src.launch import command
from src.launch.plan import (BLOCKED, FAILED, INTERRUPTED, OK, PENDING, RUNNING, Job, block_dependents, block_reason,
                             dependency_levels)
from src.launch.report import ProgressDisplay, estimate_remaining, job_event, progress_line


SLURM_MARGIN_MIN = 3  # the job's time beyond the run's: submitit's USR2@90, start-up, a clean stop


@dataclass
class SlurmOptions:
    cluster: str = "slurm"          # submitit executor: slurm, local or debug
    folder: Path = Path("run_logs/_submitit")
    partition: str | None = None
    time_min: int = 24 * 60         # the run's own time limit
    gpus_per_run: int = 0
    cpus_per_run: int = 2
    array_parallelism: int = 256
    poll_seconds: float = 2.0
    wait: bool = True               # False: submit everything and return (Slurm only)
    max_array_size: int = 1001      # the cluster's MaxArraySize: tasks per job array
    accounting: bool = True         # sacct works on this cluster
    force: bool = False             # --force: re-run finished runs


def make_executor(options: SlurmOptions):
    import submitit

    executor = submitit.AutoExecutor(folder=str(options.folder), cluster=options.cluster)
    executor.update_parameters(
        name="run_exp",
        timeout_min=options.time_min + SLURM_MARGIN_MIN,
        gpus_per_node=options.gpus_per_run or None,  # no --gpus-per-node=0 line for CPU runs
        cpus_per_task=options.cpus_per_run,
        tasks_per_node=1,
        stderr_to_stdout=True,
        slurm_partition=options.partition,
        slurm_array_parallelism=options.array_parallelism,
    )
    return executor


def _pickle_job_body_by_value() -> None:
    """The job body travels inside the pickle, so the job's Python needs only submitit."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(command)


def dependency_groups(wave: list[Job], job_ids: dict[Job, str]) -> list[tuple[dict, list[Job]]]:
    """The jobs of a wave grouped by the submitted jobs they wait for, each group with the
    sbatch parameters that say so: one job array per group. Slurm's afterok takes job ids
    (an array task is `<array id>_<index>`); kill-on-invalid-dep cancels the runs of a
    failed pretraining instead of leaving them pending forever. Dependencies missing from
    `job_ids` (finished already, or not Slurm) impose nothing."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in wave:
        ids = tuple(sorted(job_ids[dep] for dep in job.deps if dep in job_ids))
        groups.setdefault(ids, []).append(job)
    return [({"dependency": "afterok:" + ":".join(ids), "kill-on-invalid-dep": "yes"} if ids else {}, group)
            for ids, group in groups.items()]


def job_arguments(job: Job, options: SlurmOptions, experiment_py: Path, cwd: Path) -> tuple:
    """The arguments of command.run_logged for one job."""
    threads = options.cpus_per_run
    argv = command.experiment_command(experiment_py, job.config, pretrain_only=job.kind == "pretrain", threads=threads)
    # CUDA_VISIBLE_DEVICES is the cluster's to set (Slurm, or submitit's local executor)
    return argv, str(job.log), str(cwd), command.thread_env(threads), options.time_min * 60.0


def _id_range(submitted: list) -> str:
    ids = [sjob.job_id for sjob in submitted]
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"


class SubmititScheduler:
    def __init__(self, jobs: list[Job], options: SlurmOptions, experiment_py: Path, cwd: Path,
                 display: ProgressDisplay):
        self.jobs = jobs
        self.options = options
        self.experiment_py = experiment_py
        self.cwd = cwd
        self.display = display
        self.submitted: dict[Job, object] = {}   # job -> submitit Job, in submission order
        self.started: dict[Job, float] = {}
        self.signal_number: int | None = None
        self.start = time.monotonic()

    def run(self) -> int | None:
        _pickle_job_body_by_value()
        executor = make_executor(self.options)
        waves = dependency_levels(self.jobs)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._run_in_waves(executor, waves)
            if self.signal_number is not None:
                self._cancel_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.signal_number is None:
            self._block_orphans()  # after an interruption, what did not start is "not run"
        self.display.close()
        return self.signal_number

    def _run_in_waves(self, executor, waves: list[list[Job]]) -> None:
        """No dependencies outside Slurm: a wave starts once the previous one has ended,
        at most `array_parallelism` jobs at a time."""
        size = max(1, self.options.array_parallelism)
        for wave in waves:
            self._block_orphans()
            ready = [job for job in wave if job.status == PENDING]
            for i in range(0, len(ready), size):
                self._submit(executor, ready[i:i + size])
                self._wait()
                if self.signal_number is not None:
                    return

    def _on_signal(self, signum, frame) -> None:
        if self.signal_number is None:
            self.signal_number = signum

    # -- submitting --------------------------------------------------------------------

    def _submit(self, executor, wave: list[Job]) -> None:
        for extra, group in dependency_groups(wave, {}):
            for job in group:  # an earlier attempt's footer must not be taken for this one's
                command.reset_log(job.log, "submitted, not started yet")
            executor.update_parameters(slurm_additional_parameters=extra)
            args = [self._job_arguments(job) for job in group]
            submitted = executor.map_array(command.run_logged, *zip(*args))
            now = time.monotonic()
            for job, sjob in zip(group, submitted):
                job.status = RUNNING  # submitted: queued or running
                self.submitted[job] = sjob
                self.started[job] = now
            after = f", {extra['dependency']}" if extra else ""
            self.display.event(f"submitted {len(group)} job(s): {_id_range(submitted)}{after}")

    def _job_arguments(self, job: Job) -> tuple:
        return job_arguments(job, self.options, self.experiment_py, self.cwd)

    # -- waiting -----------------------------------------------------------------------

    def _wait(self) -> None:
        while self.signal_number is None:
            pending = [job for job in self.submitted if job.status == RUNNING]
            if not pending:
                return
            for job in pending:  # submission order: a dependency is looked at before its users
                if self._ended(self.submitted[job]):
                    self._finish(job)
            self.display.update(self.progress())
            if any(job.status == RUNNING for job in self.submitted):
                time.sleep(self.options.poll_seconds)

    def _ended(self, sjob) -> bool:
        if self.options.cluster == "debug":
            sjob.exception()  # runs it, in this process (done() would open the debugger on a failure)
            return True
        return sjob.done()

    def _finish(self, job: Job) -> None:
        """The log's footer is the outcome, as locally; no footer means the job died outside
        the command (time limit, cancelled, node failure), and submitit may know why."""
        code, job.seconds = command.read_outcome(job.log)
        if code == 0:
            job.status = OK
            job.detail = [str(job.info.pretrain_model if job.kind == "pretrain" else job.info.run_dir)]
        elif block_reason(job):  # Slurm cancelled it: a dependency failed
            job.status, job.detail = BLOCKED, [block_reason(job)]
        else:
            job.status = FAILED
            job.detail = command.log_excerpt(job.log) if code is not None else self._death(job)
        self.display.event(job_event(job))

    def _death(self, job: Job) -> list[str]:
        error = self.submitted[job].exception()
        text = str(error).strip() if error is not None else ""
        return [f"the job ended without finishing its command: {text.splitlines()[-1] if text else 'no error'}"]

    def _block_orphans(self) -> None:
        for job in block_dependents(self.jobs):
            self.display.event(job_event(job))

    def _cancel_all(self, grace_seconds: float = 20.0) -> None:
        unfinished = [job for job in self.submitted if job.status == RUNNING]
        self.display.event(f"cancelling {len(unfinished)} job(s) (signal {self.signal_number})")
        for job in unfinished:
            self.submitted[job].cancel(check=False)
        deadline = time.monotonic() + grace_seconds
        if self.options.cluster == "local":  # wait for the local processes to be gone
            while time.monotonic() < deadline and not all(self.submitted[j].done() for j in unfinished):
                time.sleep(0.2)
        for job in unfinished:
            job.status = INTERRUPTED
            job.detail = command.log_excerpt(job.log) or ["cancelled"]

    def progress(self) -> str:
        counts = Counter(job.status for job in self.jobs)
        durations = [job.seconds for job in self.jobs if job.status in (OK, FAILED) and job.seconds]
        now = time.monotonic()
        running = [now - self.started[job] for job in self.submitted if job.status == RUNNING]
        workers = self.options.array_parallelism if self.options.cluster == "slurm" else max(len(running), 1)
        eta = estimate_remaining(durations, running, counts[PENDING], workers)
        return progress_line(counts, now - self.start, eta)

"""Run every experiment config in one or more folders, over GPUs, CPU workers or Slurm.

    python run_exp.py -e budget_curve_runs/pabi-mnist -n 4 -j 2
    python run_exp.py -e eps_sweep_runs --dry-run
    python run_exp.py -e dp_sgd_runs --backend slurm --partition gpu --time 120

Each *.yaml under the folders (recursively, sorted) is one `experiment.py --config` run,
logged to run_logs/<folder>/<config stem>.log. Runs whose summary.json exists are skipped
(--force re-runs them), so after a failure or a Ctrl-C the same command finishes what is
missing. Each `training.pretrained: auto` model that is not cached yet is trained once,
before the runs that need it. The end is a table of ok / failed / skipped runs; the exit
code is non-zero if any run failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from src.launch import plan as planning
from src.launch.command import MARK
from src.launch.local import LocalScheduler, make_slots
from src.launch.plan import BLOCKED, FAILED, PENDING, SKIPPED, LaunchError
from src.launch.report import ProgressDisplay, exit_code, job_event, render_plan, render_table
from src.errors import UserError
from src.preflight import check_output_dir

SLURM_MARGIN_MIN = 3  # as src.launch.slurm (not imported here: it needs submitit)
DEFAULT_TIME_MIN = 24 * 60

ROOT = Path(__file__).resolve().parent
EXPERIMENT_PY = ROOT / "experiment.py"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Locally, every run gets CUDA_VISIBLE_DEVICES (one GPU id, or empty on CPU) and --max-threads\n"
               "(the cores shared out over the parallel jobs; a tiny model takes fewer). Exit codes: 0 all ok\n"
               "or skipped, 1 a run failed or was blocked (or, with --dry-run, a config is invalid), 2 bad arguments,\n"
               "130/143 interrupted by SIGINT/SIGTERM.")
    parser.add_argument("-e", "--exp-dir", dest="targets", nargs="+", action="extend", required=True, metavar="PATH",
                        help="config folder(s) (searched recursively for *.yaml) or single config files")
    parser.add_argument("-n", "--gpus", type=int, default=None, metavar="N",
                        help="number of GPUs to use (default: 1 if nvidia-smi finds one, else CPU); 0: CPU workers")
    parser.add_argument("--offset", type=int, default=0, metavar="ID", help="first GPU id (default 0)")
    parser.add_argument("-j", "--jobs_per_gpu", "--jobs-per-gpu", dest="jobs", type=int, default=1, metavar="N",
                        help="concurrent jobs per GPU; on CPU, the number of workers (default 1)")
    parser.add_argument("--force", action="store_true", help="re-run runs that have finished already")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate every config fully and list what would run, what is skipped and why; "
                             "run nothing")
    parser.add_argument("--run-logs", default="run_logs", metavar="DIR",
                        help="where the per-run logs go (default run_logs)")
    parser.add_argument("--backend", choices=["local", "slurm"], default="local",
                        help="local: child processes on this machine (default); slurm: submit through submitit")

    slurm = parser.add_argument_group("slurm backend")
    slurm.add_argument("--partition", help="Slurm partition (default: the cluster's default partition)")
    slurm.add_argument("--time", type=int, default=None, metavar="MINUTES",
                       help="time limit of each run; its job asks Slurm for %d minutes more, to start and stop "
                            "cleanly (default 1440, or what the partition allows)" % SLURM_MARGIN_MIN)
    slurm.add_argument("--gpus-per-run", type=int, default=None, metavar="N",
                       help="GPUs per run (default: 1 on a partition with GPUs, 0 on a CPU partition)")
    slurm.add_argument("--cpus-per-run", type=int, default=2, metavar="N",
                       help="CPU cores per run, also the most threads a run takes (default 2)")
    slurm.add_argument("--array-parallelism", type=int, default=256, metavar="N",
                       help="most runs of one job array running at once (default 256)")
    slurm.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                       help="submitit executor; local and debug run on this machine, for testing (default slurm)")
    slurm.add_argument("--no-wait", action="store_true",
                       help="submit everything and exit (Slurm only); the same command run later follows the jobs "
                            "still queued or running (nothing is submitted twice) and submits what is missing. "
                            "Without it the launcher waits, and Ctrl-C cancels the jobs it submitted")
    args = parser.parse_args(argv)
    for name in ("gpus", "offset", "jobs", "time", "gpus_per_run", "cpus_per_run", "array_parallelism"):
        value = getattr(args, name)
        if value is not None and value < (1 if name in ("jobs", "time", "array_parallelism") else 0):
            parser.error(f"--{name.replace('_', '-')} must not be {value}")
    if args.no_wait and (args.backend != "slurm" or args.cluster != "slurm"):
        parser.error("--no-wait needs --backend slurm on a Slurm cluster (--cluster slurm)")
    return args


def count_gpus() -> int:
    """GPUs nvidia-smi lists; 0 without a driver. Not torch: the launcher stays light."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def choose_gpus(requested: int | None, found: int) -> tuple[int, str | None]:
    """How many GPUs the local backend uses, and a note when that is not what was asked."""
    if requested == 0:
        return 0, None
    if found == 0:
        note = f"-n {requested}: no GPU found (nvidia-smi), using CPU workers" if requested else None
        return 0, note
    return (1 if requested is None else requested), None


def cpu_cores() -> int:
    """The cores this launcher may use (its affinity, cut to its cgroup's CPU quota)."""
    from src import threads

    return threads.available_cores(quota=threads.cgroup_cpu_limit())


def main(argv=None) -> int:
    args = parse_args(argv)
    cwd = Path.cwd()
    try:
        slots, where = workers(args)  # on Slurm: the cluster is asked first (before anything is written)
        jobs = plan_jobs(args, cwd)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        planning.claimed_elsewhere(jobs)
        print(render_plan(jobs, planning.missing_checkpoint_warnings(jobs), where))
        return 1 if any(job.status == FAILED for job in jobs) else 0

    counts = Counter((job.kind, job.status) for job in jobs)
    print(f"run_exp: {counts['run', PENDING]} run(s) to do, {counts['pretrain', PENDING]} pretraining(s), "
          f"{counts['run', SKIPPED]} skipped, {counts['run', FAILED]} invalid; on {where}", file=sys.stderr)
    display = ProgressDisplay(sys.stderr)
    for job in jobs:
        if job.status == FAILED:  # invalid: its log says why, like any other failure
            _write_invalid_log(job)
            display.event(job_event(job))

    start = time.monotonic()
    scheduler = make_scheduler(args, jobs, slots, cwd, display)
    signal_number = scheduler.run()
    failure = getattr(scheduler, "failure", None)
    if args.no_wait and not failure and signal_number is None:
        print(f"{scheduler.submitted_summary()}; their logs go to {args.run_logs}/. Run the same command again "
              f"to follow them (it submits nothing twice) and see the table")
        return 1 if any(job.status in (FAILED, BLOCKED) for job in jobs) else 0
    print(render_table(jobs, time.monotonic() - start, interrupted=signal_number is not None))
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 2
    return exit_code(jobs, signal_number)


def plan_jobs(args, cwd: Path) -> list:
    try:  # before any job starts or any log is written
        check_output_dir(args.run_logs, "--run-logs")
    except UserError as e:
        raise LaunchError(str(e)) from None
    files = planning.find_configs(args.targets, cwd)
    if not files:
        raise LaunchError(f"no *.yaml under {' '.join(args.targets)}")
    # --dry-run checks as deeply as experiment.py --dry-run (imports torch); a real launch
    # only needs the schema, and a run refused later reports its own error line
    infos = [planning.read_config(file, cwd, full_check=args.dry_run) for file in files]
    return planning.build_jobs(infos, Path(args.run_logs), force=args.force)


def workers(args) -> tuple[list, str]:
    """The local backend's slots, and a description of where the runs go. On Slurm, the
    cluster is checked first and the defaults fitted to it (args updated)."""
    if args.backend != "local":
        if args.cluster == "slurm":
            fit_to_cluster(args)
        else:
            args.gpus_per_run = args.gpus_per_run or 0
            args.time = args.time or DEFAULT_TIME_MIN
        where = f"{args.gpus_per_run} GPU(s), {args.cpus_per_run} CPU(s), {args.time} min per run"
        return [], (f"{args.cluster_info.describe()}: {where}" if args.cluster == "slurm"
                    else f"submitit ({args.cluster}), {where}")
    gpus, note = choose_gpus(args.gpus, count_gpus())
    if note:
        print(f"note: {note}", file=sys.stderr)
    slots = make_slots(gpus, args.offset, args.jobs, cpu_cores())
    where = f"{gpus} GPU(s) x {args.jobs} job(s)" if gpus else f"{len(slots)} CPU worker(s)"
    return slots, f"{where}, {slots[0].threads} thread(s) each"


def fit_to_cluster(args) -> None:
    """Ask the cluster (sinfo, scontrol show config) and check the request against it
    before anything is submitted or written: a job Slurm would refuse, or keep pending
    forever (a time over the partition's limit), is a clear error here instead."""
    from src.launch.slurm_cli import probe_cluster

    info = probe_cluster(args.partition)
    args.cluster_info = info
    args.partition = info.partition
    limit = None if info.max_time_min is None else info.max_time_min - SLURM_MARGIN_MIN
    if args.time is None:
        args.time = DEFAULT_TIME_MIN if limit is None else min(DEFAULT_TIME_MIN, limit)
    if limit is not None and args.time > limit:
        raise LaunchError(f"--time {args.time}: partition {info.partition} allows {info.max_time_min} min per job, "
                          f"and a job needs {SLURM_MARGIN_MIN} min more than its run; use --time {limit} or less")
    if limit is not None and limit < 1:
        raise LaunchError(f"partition {info.partition} allows only {info.max_time_min} min per job")
    if args.gpus_per_run is None:
        args.gpus_per_run = 1 if info.has_gpus else 0
    elif args.gpus_per_run > 0 and not info.has_gpus:
        raise LaunchError(f"--gpus-per-run {args.gpus_per_run}: partition {info.partition} has no GPU (sinfo lists "
                          f"no gpu GRES); use --gpus-per-run 0, or a partition with GPUs (--partition)")
    if args.cpus_per_run > info.max_cpus > 0:
        raise LaunchError(f"--cpus-per-run {args.cpus_per_run}: the nodes of partition {info.partition} have at most "
                          f"{info.max_cpus} CPU(s)")


def make_scheduler(args, jobs, slots, cwd: Path, display):
    if args.backend == "local":
        return LocalScheduler(jobs, slots, EXPERIMENT_PY, cwd, display, force=args.force)
    from src.launch.slurm import SlurmOptions, SubmititScheduler  # imports submitit

    info = getattr(args, "cluster_info", None)
    options = SlurmOptions(cluster=args.cluster, folder=Path(args.run_logs) / "_submitit", partition=args.partition,
                           time_min=args.time, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                           array_parallelism=args.array_parallelism, wait=not args.no_wait,
                           poll_seconds=2.0 if args.cluster == "slurm" else 0.3, force=args.force,
                           max_array_size=info.max_array_size if info else 1001,
                           accounting=info.accounting if info else True)
    if args.cluster == "slurm":
        from src.launch.slurm_scheduler import SlurmScheduler

        return SlurmScheduler(jobs, options, EXPERIMENT_PY, cwd, display)
    return SubmititScheduler(jobs, options, EXPERIMENT_PY, cwd, display)


def _write_invalid_log(job) -> None:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.log.write_text(f"{MARK} not run: the config does not validate\n" + "\n".join(job.detail) + "\n")


if __name__ == "__main__":
    sys.exit(main())

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
from src.launch.plan import FAILED, PENDING, RUNNING, SKIPPED, LaunchError
from src.launch.report import ProgressDisplay, exit_code, job_event, render_plan, render_table

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
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--time", type=int, default=24 * 60, metavar="MINUTES", help="time limit per run (default 1440)")
    slurm.add_argument("--gpus-per-run", type=int, default=1, metavar="N", help="GPUs per run (default 1)")
    slurm.add_argument("--cpus-per-run", type=int, default=2, metavar="N",
                       help="CPU cores per run, also the most threads a run takes (default 2)")
    slurm.add_argument("--array-parallelism", type=int, default=256, metavar="N",
                       help="most runs of one job array running at once (default 256)")
    slurm.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                       help="submitit executor; local and debug run on this machine, for testing (default slurm)")
    slurm.add_argument("--no-wait", action="store_true",
                       help="submit everything and exit (Slurm only); run the same command later to see what is "
                            "missing. Without it the launcher waits, and Ctrl-C cancels the submitted jobs")
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
        jobs = plan_jobs(args, cwd)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    slots, where = workers(args)
    if args.dry_run:
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
    signal_number = make_scheduler(args, jobs, slots, cwd, display).run()
    if args.no_wait:
        submitted = sum(job.kind == "run" and job.status == RUNNING for job in jobs)
        print(f"submitted {submitted} run(s); their logs go to {args.run_logs}/; "
              f"run the same command again to see what is missing")
        return 0
    print(render_table(jobs, time.monotonic() - start, interrupted=signal_number is not None))
    return exit_code(jobs, signal_number)


def plan_jobs(args, cwd: Path) -> list:
    files = planning.find_configs(args.targets, cwd)
    if not files:
        raise LaunchError(f"no *.yaml under {' '.join(args.targets)}")
    # --dry-run checks as deeply as experiment.py --dry-run (imports torch); a real launch
    # only needs the schema, and a run refused later reports its own error line
    infos = [planning.read_config(file, cwd, full_check=args.dry_run) for file in files]
    return planning.build_jobs(infos, Path(args.run_logs), force=args.force)


def workers(args) -> tuple[list, str]:
    """The local backend's slots, and a description of where the runs go."""
    if args.backend != "local":
        return [], f"submitit ({args.cluster}), {args.gpus_per_run} GPU(s) and {args.cpus_per_run} CPU(s) per run"
    gpus, note = choose_gpus(args.gpus, count_gpus())
    if note:
        print(f"note: {note}", file=sys.stderr)
    slots = make_slots(gpus, args.offset, args.jobs, cpu_cores())
    where = f"{gpus} GPU(s) x {args.jobs} job(s)" if gpus else f"{len(slots)} CPU worker(s)"
    return slots, f"{where}, {slots[0].threads} thread(s) each"


def make_scheduler(args, jobs, slots, cwd: Path, display):
    if args.backend == "local":
        return LocalScheduler(jobs, slots, EXPERIMENT_PY, cwd, display)
    from src.launch.slurm import SlurmOptions, SubmititScheduler  # imports submitit

    options = SlurmOptions(cluster=args.cluster, folder=Path(args.run_logs) / "_submitit", partition=args.partition,
                           time_min=args.time, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                           array_parallelism=args.array_parallelism, wait=not args.no_wait,
                           poll_seconds=2.0 if args.cluster == "slurm" else 0.3)
    return SubmititScheduler(jobs, options, EXPERIMENT_PY, cwd, display)


def _write_invalid_log(job) -> None:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.log.write_text(f"{MARK} not run: the config does not validate\n" + "\n".join(job.detail) + "\n")


if __name__ == "__main__":
    sys.exit(main())

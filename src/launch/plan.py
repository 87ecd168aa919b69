"""From folders of configs to a list of jobs with dependencies.

Every config file is read once in this process with the schema alone (src.config, no
torch), which gives its run id, its result directory and the pretrained model it needs.
From that:

* a run whose summary.json exists is skipped (unless forced), and so is a second file
  that describes the very same run (same run id, hence the same result directory);
* each distinct `training.pretrained: auto` model that is not cached yet gets one
  `--pretrain-only` job, and every run that needs it waits for it: many workers never
  train the same model twice, and a failed pretraining blocks its runs visibly;
* a run whose explicit `training.pretrained` path lies inside another config's result
  directory (the reference's `logs/<id>/ckpt`) waits for that run;
* an invalid config becomes a failed job with the validation message: it never stops the
  others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PENDING, RUNNING, OK, FAILED, BLOCKED, SKIPPED, INTERRUPTED = (
    "pending", "running", "ok", "failed", "blocked", "skipped", "interrupted")
PRETRAIN_LOG_DIR = "_pretrain"


# ---------------------------------------------------------------------------------------
# Discovery


class LaunchError(Exception):
    """A problem with the launcher's arguments: printed as one line, exit code 2."""


@dataclass(frozen=True)
class ConfigFile:
    path: Path      # what the child gets as --config (relative to the working directory when inside it)
    display: str    # how reports and log files name it: the folder as given, then the path inside it


def find_configs(targets: list[str | Path], cwd: Path | None = None) -> list[ConfigFile]:
    """Every *.yaml under each target folder (recursively, sorted, hidden entries ignored),
    or the target itself when it is a file; each file once, in the order of the targets."""
    cwd = Path(cwd or Path.cwd())
    found, seen = [], set()
    for target in targets:
        root = Path(target)
        absolute = root if root.is_absolute() else cwd / root
        if absolute.is_file():
            files = [absolute]
            base = absolute.parent
        elif absolute.is_dir():
            files = sorted(_yaml_files(absolute), key=lambda p: p.relative_to(absolute).parts)
            base = absolute
        else:
            raise LaunchError(f"-e {target}: no such file or folder")
        for file in files:
            key = os.path.realpath(file)
            if key in seen:
                continue
            seen.add(key)
            found.append(ConfigFile(path=_relative_if_inside(file, cwd), display=_display(file, base, cwd)))
    return found


def _yaml_files(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .ipynb_checkpoints and the like
        for name in filenames:
            if name.endswith(".yaml") and not name.startswith("."):
                yield Path(dirpath) / name


def _relative_if_inside(path: Path, cwd: Path) -> Path:
    try:
        return path.relative_to(cwd)
    except ValueError:
        return path


def _display(file: Path, base: Path, cwd: Path) -> str:
    """The path from the working directory (like the reference's run_logs/<e>/<cfg>.log);
    for a folder outside it, the folder's own name and the path inside it."""
    try:
        return file.relative_to(cwd).as_posix()
    except ValueError:
        return (Path(base.name) / file.relative_to(base)).as_posix()


def log_path(run_logs: Path, display: str) -> Path:
    """run_logs/<folder>/<sub>/<config stem>.log, mirroring the config's path."""
    return Path(run_logs) / Path(display).with_suffix(".log")


# ---------------------------------------------------------------------------------------
# Reading one config


@dataclass
class ConfigInfo:
    """What the launcher needs to know about one config file (paths absolute)."""
    file: ConfigFile
    run_id: str | None = None
    run_dir: Path | None = None
    pretrain_key: str | None = None          # for training.pretrained: auto
    pretrain_model: Path | None = None       # the cache file that key lives in
    pretrained_path: Path | None = None      # for an explicit training.pretrained path
    error: str | None = None                 # why the config is refused


def pretrained_cache_model(checkpoints_dir: Path, key: str) -> Path:
    """Where `training.pretrained: auto` keeps a model (the cache's own layout)."""
    from src.training.checkpoints import PretrainedCache

    return PretrainedCache(checkpoints_dir).model_path(key)


def read_config(file: ConfigFile, cwd: Path, full_check: bool = False) -> ConfigInfo:
    """Validate a config as experiment.py would; `full_check` also runs make_plan (the
    algorithms' rules and the certificate; imports torch), as experiment.py --dry-run does."""
    from src import catalogue  # noqa: F401  (fills the registries the config is checked against)
    from src.config import load_config, pretrained_key, run_id
    from src.errors import UserError

    info = ConfigInfo(file)
    path = file.path if file.path.is_absolute() else cwd / file.path
    try:
        config = load_config(path)
        # A logs_dir that is a file (or under one) would fail in the claims code of every
        # launch: one invalid config instead (experiment.py checks the same before writing).
        from src.preflight import check_output_dir

        check_output_dir(_absolute(config.logs_dir, cwd), "logs_dir")
        if config.training.pretrained == "auto":
            check_output_dir(_absolute(config.checkpoints_dir, cwd), "checkpoints_dir")
        if full_check:
            from src.runner import make_plan

            make_plan(config)
    except UserError as e:
        info.error = f"error: {e}"
        return info
    except Exception as e:  # a bug in the checks: still one failed config, not a dead launcher
        info.error = f"error while checking the config: {type(e).__name__}: {e}"
        return info
    info.run_id = run_id(config)
    info.run_dir = _absolute(config.logs_dir, cwd) / info.run_id
    pretrained = config.training.pretrained
    if pretrained == "auto":
        info.pretrain_key = pretrained_key(config)
        info.pretrain_model = pretrained_cache_model(_absolute(config.checkpoints_dir, cwd), info.pretrain_key)
    elif pretrained:
        info.pretrained_path = _absolute(pretrained, cwd)
    return info


def _absolute(path: str | Path, cwd: Path) -> Path:
    path = Path(path)
    return Path(os.path.normpath(path if path.is_absolute() else cwd / path))


# ---------------------------------------------------------------------------------------
# Jobs


@dataclass(eq=False)
class Job:
    kind: str                       # "run" or "pretrain"
    name: str                       # config path, or "pretrain <key>"
    config: Path                    # --config of the command
    log: Path
    info: ConfigInfo                # the config (for a pretraining: its first user's)
    deps: list["Job"] = field(default_factory=list)
    status: str = PENDING
    detail: list[str] = field(default_factory=list)  # result dir, skip reason, or error lines
    seconds: float | None = None
    users: int = 0                  # for a pretraining: how many runs wait for it


def build_jobs(infos: list[ConfigInfo], run_logs: Path, force: bool = False) -> list[Job]:
    """Pretraining jobs first (in the order their first user appears), then one job per
    config in discovery order. Only jobs with status `pending` are to be executed."""
    runs = [_run_job(info, run_logs) for info in infos]
    _mark_skips(runs, force)
    _link_explicit_producers(runs)
    pretrains = _pretraining_jobs(runs, run_logs)
    return pretrains + runs


def _run_job(info: ConfigInfo, run_logs: Path) -> Job:
    job = Job("run", info.file.display, info.file.path, log_path(run_logs, info.file.display), info)
    if info.error:
        job.status = FAILED
        job.detail = info.error.splitlines()
    return job


def _mark_skips(runs: list[Job], force: bool) -> None:
    first_with_dir: dict[Path, Job] = {}
    for job in runs:
        if job.status != PENDING:
            continue
        run_dir = job.info.run_dir
        if run_dir in first_with_dir:
            job.status = SKIPPED
            job.detail = [f"same run as {first_with_dir[run_dir].name} ({run_dir.name})"]
            continue
        first_with_dir[run_dir] = job
        if not force and (run_dir / "summary.json").is_file():
            job.status = SKIPPED
            job.detail = [f"finished earlier: {run_dir}"]


def _link_explicit_producers(runs: list[Job]) -> None:
    """A run loading `<logs>/<id>/ckpt` waits for the config whose result directory that is,
    when that config is to be run now too (a finished one has left its checkpoint)."""
    producers = {job.info.run_dir: job for job in runs if job.info.run_dir and job.status != SKIPPED}
    for job in runs:
        wanted = job.info.pretrained_path
        if job.status != PENDING or wanted is None:
            continue
        for run_dir, producer in producers.items():
            if producer is not job and _inside(wanted, run_dir):
                job.deps.append(producer)
                break


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _pretraining_jobs(runs: list[Job], run_logs: Path) -> list[Job]:
    by_model: dict[Path, Job] = {}
    log_names: set[str] = set()
    for job in runs:
        info = job.info
        if job.status != PENDING or info.pretrain_model is None or info.pretrain_model.is_file():
            continue
        pretrain = by_model.get(info.pretrain_model)
        if pretrain is None:
            log_name = _unique(info.pretrain_key, log_names)
            pretrain = Job("pretrain", f"pretrain {info.pretrain_key}", info.file.path,
                           Path(run_logs) / PRETRAIN_LOG_DIR / f"{log_name}.log", info)
            by_model[info.pretrain_model] = pretrain
        pretrain.users += 1
        job.deps.insert(0, pretrain)
    return list(by_model.values())


def _unique(name: str, taken: set[str]) -> str:
    """The same key in two checkpoint folders is two pretrainings: keep both logs."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def dependency_levels(jobs: list[Job]) -> list[list[Job]]:
    """The pending jobs in waves: each job's pending dependencies lie in earlier waves.
    A cycle (two runs loading each other's checkpoint) is marked blocked."""
    pending = [job for job in jobs if job.status == PENDING]
    level: dict[Job, int] = {}
    visiting: set[Job] = set()

    def depth(job: Job) -> int | None:
        if job in level:
            return level[job]
        if job in visiting:
            return None
        visiting.add(job)
        depths = [depth(dep) for dep in job.deps if dep.status == PENDING]
        visiting.discard(job)
        if any(d is None for d in depths):
            return None
        level[job] = 1 + max(depths, default=-1)
        return level[job]

    waves: list[list[Job]] = []
    for job in pending:
        d = depth(job)
        if d is None:
            job.status = BLOCKED
            job.detail = ["blocked: its pretrained checkpoint depends on itself (a cycle of training.pretrained paths)"]
            continue
        while len(waves) <= d:
            waves.append([])
        waves[d].append(job)
    return waves


def block_reason(job: Job) -> str | None:
    """Why `job` can no longer run (a dependency failed), or None."""
    for dep in job.deps:
        if dep.status in (FAILED, BLOCKED):
            what = dep.name if dep.kind == "pretrain" else f"{dep.name} (it produces the pretrained checkpoint)"
            return f"blocked: {what} {dep.status}"
    return None


def block_dependents(jobs: list[Job]) -> list[Job]:
    """Mark blocked, with the reason, every pending job whose dependency failed, also
    through chains (pretraining -> producer run -> its user); returns them. They are
    reported, never silently dropped."""
    blocked = []
    changed = True
    while changed:
        changed = False
        for job in jobs:
            reason = block_reason(job) if job.status == PENDING else None
            if reason:
                job.status, job.detail = BLOCKED, [reason]
                blocked.append(job)
                changed = True
    return blocked


def skip_dependents(jobs: list[Job]) -> list[Job]:
    """Mark skipped every pending job that waits for a run skipped while this launcher ran
    (another process computes it): its checkpoint is not ours to wait for. Returns them."""
    skipped = []
    changed = True
    while changed:
        changed = False
        for job in jobs:
            if job.status != PENDING:
                continue
            dep = next((d for d in job.deps if d.status == SKIPPED), None)
            if dep is not None:
                job.status = SKIPPED
                job.detail = [f"waits for {dep.name}, which another process computes: run again once it has finished"]
                skipped.append(job)
                changed = True
    return skipped


def claim_target(job: Job) -> Path:
    """The directory a job's claim is about (src/claims.py): a run's result directory, or
    a pretraining's cache entry."""
    return job.info.pretrain_model.parent if job.kind == "pretrain" else job.info.run_dir


def claimed_elsewhere(jobs: list[Job]) -> None:
    """For a dry run: pending runs another process holds now are listed as skipped."""
    from src import claims

    for job in jobs:
        if job.kind == "run" and job.status == PENDING:
            who = claims.holder(claim_target(job))
            if who:
                job.status, job.detail = SKIPPED, [f"claimed by {who}: computed there, not here"]
    skip_dependents(jobs)


def missing_checkpoint_warnings(jobs: list[Job]) -> list[str]:
    """Runs whose explicit pretrained path exists nowhere and that no config here produces:
    they will fail; say so in the dry run."""
    out = []
    for job in jobs:
        info = job.info
        if job.kind == "run" and job.status == PENDING and info.pretrained_path is not None \
                and not job.deps and not info.pretrained_path.exists():
            out.append(f"{job.name}: training.pretrained {info.pretrained_path} does not exist "
                       f"and no config here produces it")
    return out

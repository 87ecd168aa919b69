"""What the launcher asks Slurm directly: the cluster before submitting, job states after.

submitit submits (sbatch) and pickles the job body; everything else goes through Slurm's
own commands, because submitit follows jobs with `sacct` only, and a cluster without
accounting (sacct: "accounting storage is disabled") would leave it waiting forever,
also on jobs Slurm cancelled long ago:

* `probe_cluster`: sinfo and `scontrol show config` before anything is submitted or
  written: the partition exists and is up, its time limit, whether it has GPUs, CPUs per
  node, MaxArraySize, and whether accounting exists;
* `job_states`: squeue (every state slurmctld still remembers, MinJobAge after the end),
  then sacct where accounting exists; a job known to neither has ended.
* `cancel`: scancel.

The parsing is pure and tested on captured outputs; the commands themselves run in
tests/test_slurm_cluster.py against a real one-node cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from src.launch.plan import LaunchError

# States of a job that has not ended (squeue --states=all also lists ended ones).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
          "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED", "SPECIAL_EXIT"}
# Pending reasons that mean "never": Slurm keeps such a job pending forever unless told otherwise.
NEVER = {"DependencyNeverSatisfied"}
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class JobState:
    state: str            # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str = ""      # squeue's reason (Dependency, DependencyNeverSatisfied, NonZeroExitCode, ...)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def describe(self) -> str:
        reason = self.reason if self.reason and self.reason not in ("None", "(null)") else ""
        return f"{self.state}{f' ({reason})' if reason else ''}"


@dataclass(frozen=True)
class ClusterInfo:
    partition: str
    max_time_min: int | None      # the partition's MaxTime; None: unlimited
    has_gpus: bool
    max_cpus: int                 # CPUs of its largest node
    nodes: int
    max_array_size: int           # tasks per job array: indices 0 .. MaxArraySize - 1
    accounting: bool              # sacct works

    def describe(self) -> str:
        limit = "no time limit" if self.max_time_min is None else f"time limit {self.max_time_min} min"
        return (f"Slurm partition {self.partition} ({self.nodes} node(s), {self.max_cpus} CPU(s) each, "
                f"{'GPUs' if self.has_gpus else 'no GPU'}, {limit}"
                f"{'' if self.accounting else ', no accounting: jobs followed with squeue'})")


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


# ---------------------------------------------------------------------------------------
# The cluster


def parse_slurm_minutes(text: str) -> int | None:
    """sinfo's %l / MaxTime: 'infinite', 'UNLIMITED', 'D-HH:MM:SS', 'HH:MM:SS', 'MM:SS', 'MM'
    (also 'D-HH' and 'D-HH:MM'); minutes rounded down, None when unlimited."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", "none"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds // 60


def parse_sinfo(text: str, partition: str | None) -> dict:
    """`sinfo -h -o %P|%a|%l|%G|%c|%D` lines -> the partition's summary. Without a partition
    asked for, the default one (marked '*')."""
    rows = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, avail, limit, gres, cpus, nodes = fields
        rows.append((name.rstrip("*"), name.endswith("*"), avail, limit, gres, cpus, nodes))
    if partition is None:
        defaults = [row for row in rows if row[1]]
        if not defaults:
            raise LaunchError("this Slurm cluster has no default partition: name one with --partition "
                              f"(partitions: {', '.join(sorted({row[0] for row in rows})) or 'none'})")
        partition = defaults[0][0]
    mine = [row for row in rows if row[0] == partition]
    if not mine:
        known = ", ".join(sorted({row[0] for row in rows})) or "none"
        raise LaunchError(f"--partition {partition}: no such Slurm partition (sinfo lists: {known})")
    if not any(row[2] == "up" for row in mine):
        raise LaunchError(f"--partition {partition}: the partition is {mine[0][2]} (sinfo), jobs would not start")
    limits = [parse_slurm_minutes(row[3]) for row in mine]
    return {"partition": partition,
            "max_time_min": None if any(limit is None for limit in limits) else max(limits),
            "has_gpus": any(re.search(r"(^|,)gpu[:(]|(^|,)gpu$", row[4]) for row in mine),
            "max_cpus": max(int(re.sub(r"\D", "", row[5]) or 0) for row in mine),
            "nodes": sum(int(re.sub(r"\D", "", row[6]) or 0) for row in mine)}


def parse_config(text: str) -> dict:
    """`scontrol show config`: the keys the launcher needs."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    size = values.get("MaxArraySize", "1001")
    return {"max_array_size": int(size) if size.isdigit() else 1001,
            "accounting": values.get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none"}


def probe_cluster(partition: str | None) -> ClusterInfo:
    """The cluster as it is now, or a LaunchError that says what is wrong."""
    for tool in ("sbatch", "sinfo", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            raise LaunchError(f"--backend slurm: `{tool}` is not installed here (is this a Slurm login node? "
                              f"--cluster local runs the same jobs on this machine)")
    try:
        sinfo = _run(["sinfo", "-h", "-o", "%P|%a|%l|%G|%c|%D"])
        config = _run(["scontrol", "show", "config"])
    except subprocess.TimeoutExpired:
        raise LaunchError(f"--backend slurm: the Slurm controller did not answer within {TIMEOUT_SECONDS} s") from None
    for result in (sinfo, config):
        if result.returncode != 0:
            raise LaunchError(f"--backend slurm: `{' '.join(result.args[:3])}` failed: "
                              f"{_first_line(result.stderr) or 'exit code %d' % result.returncode}")
    return ClusterInfo(**parse_sinfo(sinfo.stdout, partition), **parse_config(config.stdout))


# ---------------------------------------------------------------------------------------
# Jobs


def base_id(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def parse_squeue(text: str) -> dict[str, JobState]:
    """`squeue -h -r -o %i|%T|%r` lines -> {job id: state}; an array task is '<array>_<index>'."""
    states = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3 and fields[0]:
            states[fields[0]] = JobState(fields[1], fields[2])
    return states


def parse_sacct(text: str) -> dict[str, JobState]:
    """`sacct -n -P -X -o JobID,State` lines; states like 'CANCELLED by 0' keep their first word."""
    states = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) >= 2 and fields[0]:
            states[fields[0]] = JobState(fields[1].split()[0] if fields[1].split() else "UNKNOWN")
    return states


def job_states(job_ids: list[str], accounting: bool) -> dict[str, JobState] | None:
    """The state of each job Slurm still knows; a job missing from the answer has ended
    and been forgotten (no accounting). None when Slurm could not be asked (try later)."""
    if not job_ids:
        return {}
    bases = sorted({base_id(job_id) for job_id in job_ids})
    try:
        result = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(bases)])
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        if "Invalid job id" not in result.stderr:  # every one of them forgotten already: an answer
            return None
        found = {}
    else:
        found = parse_squeue(result.stdout)
    wanted = set(job_ids)
    states = {job_id: state for job_id, state in found.items() if job_id in wanted}
    missing = sorted(wanted - set(states))
    if missing and accounting:
        try:
            result = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
            if result.returncode == 0:
                states.update({k: v for k, v in parse_sacct(result.stdout).items() if k in wanted})
        except subprocess.TimeoutExpired:
            pass
    return states


def cancel(job_ids: list[str]) -> str | None:
    """scancel; the error line if it failed."""
    if not job_ids:
        return None
    try:
        result = _run(["scancel", *sorted(set(job_ids))])
    except (subprocess.TimeoutExpired, OSError) as e:
        return str(e)
    return None if result.returncode == 0 else _first_line(result.stderr)

"""How many CPU threads torch gets: from the work's size and the cores this process may use.

Why not torch's default (one thread per core the process may run on): torch's OpenMP
runtime (libgomp) lets a thread that has finished its part of a parallel region spin for
about 300,000 iterations before it sleeps. A tiny_net step is hundreds of regions of a
few microseconds each; when another process wants the same core, the spinning thread
burns the time slice of the very thread it waits for. Measured on 2 shared cores: a
tiny_net epoch took 6-13 CPU seconds and 22-45 s of wall time with two threads, 1.5 CPU
seconds with two threads that sleep instead of spinning, and 0.6 CPU seconds with one
thread (benchmarks/README.md). So:

* threads sleep when they wait (OMP_WAIT_POLICY=PASSIVE), unless the user set a policy;
* a step gets one thread per FLOPS_PER_THREAD of arithmetic, so that only work whose
  parallel regions are long (the convolutions of tiny_net_cifar) is split at all;
* never more threads than the cores the process may use: its CPU affinity, its cgroup's
  CPU quota, and a ceiling handed down by a launcher (run_exp.py's per-worker share) or
  the environment (OMP_NUM_THREADS);
* `--threads` (or the config's `threads:`) sets the number exactly and overrides all this,
  up to the cores the process may use: more threads than cores only fight over them (an
  explicit 10,000 once started 10,000 OpenMP threads on 2 cores), so a larger request is
  cut to the cores with a one-line note.

The count never depends on the current load: results can differ in the last bits between
thread counts, and a rerun on the same machine must give the same numbers.

This module does not import torch: libgomp reads the wait policy once, when torch is
loaded, so `prepare` has to run before the first `import torch`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

# Arithmetic per step (floating-point operations, forward and backward) that one thread
# has to have to itself before a second thread pays. 5e8 is about 5 ms of one core's
# convolution throughput here: parallel regions that long hide a wake-up or a scheduler
# time slice. tiny_net (3e6 per step), three_layer_net (1e7) stay far below it; the
# convolutional networks (4e9 and more) far above.
FLOPS_PER_THREAD = 5e8

WAIT_POLICY = "OMP_WAIT_POLICY"
CEILING_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# -- the cores this process may use ---------------------------------------------------------


def affinity_cores() -> int:
    """CPUs in this process's affinity mask (taskset, Slurm's binding, a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("<quota> <period>" or "max <period>") -> CPUs, None if unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = float(parts[1]) if len(parts) > 1 else 100000.0
    quota = float(parts[0])
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` -> CPUs, None if unlimited (-1)."""
    quota, period = float(quota_text.strip()), float(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _ancestors(cgroup_path: str) -> list[str]:
    """"/a/b" -> ["a/b", "a", ""]: a quota anywhere above the process limits it too."""
    parts = [p for p in cgroup_path.strip().split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(proc_cgroup: str | Path = "/proc/self/cgroup", root: str | Path = "/sys/fs/cgroup") -> float | None:
    """The CPUs this process's cgroup quota allows (the tightest level on the way up to the
    root), or None when there is no quota or no cgroup to read. Both cgroup v1 (the `cpu`
    controller's CFS quota) and v2 (`cpu.max`) are read; in a container whose view of
    /proc/self/cgroup names a path that its /sys/fs/cgroup does not have, the levels that
    do exist (at least the mount's root, the container's own group) are read."""
    text = _read(Path(proc_cgroup))
    if text is None:
        return None
    root = Path(root)
    limits = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":  # v2, the unified hierarchy
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            for level in _ancestors(path):
                found = _read(base / level / "cpu.max")
                if found is not None:
                    limits.append(parse_cpu_max(found))
        elif "cpu" in controllers.split(","):  # v1: cpu (often mounted as cpu,cpuacct)
            for mount in (root / "cpu", root / controllers):
                if not mount.is_dir():
                    continue
                for level in _ancestors(path):
                    quota, period = _read(mount / level / "cpu.cfs_quota_us"), _read(mount / level / "cpu.cfs_period_us")
                    if quota is not None and period is not None:
                        try:
                            limits.append(parse_cfs(quota, period))
                        except ValueError:
                            pass
                break
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def available_cores(affinity: int | None = None, quota: float | None = None) -> int:
    """Cores the process may keep busy: its affinity, cut down to its quota (rounded down:
    threads beyond the quota are throttled together at the end of every period)."""
    cores = affinity_cores() if affinity is None else affinity
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def environment_ceiling(environ=None) -> int | None:
    """OMP_NUM_THREADS (or MKL_NUM_THREADS) as an upper bound, as launchers and clusters set
    it; a list such as "4,2" gives its first level; anything else is ignored, as libgomp does."""
    environ = os.environ if environ is None else environ
    values = []
    for name in CEILING_VARIABLES:
        text = environ.get(name, "").split(",")[0].strip()
        if text.isdigit() and int(text) > 0:
            values.append(int(text))
    return min(values) if values else None


# -- the choice -----------------------------------------------------------------------------


def threads_for_work(flops_per_step: float, cores: int) -> int:
    """One thread per FLOPS_PER_THREAD of arithmetic in a step, at least 1, at most `cores`."""
    return max(1, min(cores, int(flops_per_step // FLOPS_PER_THREAD)))


@dataclass(frozen=True)
class ThreadBudget:
    cores: int                 # affinity and quota
    ceiling: int | None        # a launcher's share or OMP_NUM_THREADS; None: no ceiling
    requested: int | None      # --threads or the config's `threads:`; None: choose

    @property
    def limit(self) -> int:
        return min(self.cores, self.ceiling) if self.ceiling else self.cores

    def choose(self, flops_per_step: float | None) -> int:
        """The thread count for a step of `flops_per_step` floating-point operations on the
        CPU; None (the arithmetic runs elsewhere, e.g. on a GPU) gives the whole limit."""
        if self.requested:
            return min(self.requested, self.cores)
        if flops_per_step is None:
            return self.limit
        return threads_for_work(flops_per_step, self.limit)

    def note(self) -> str | None:
        """A line saying that an explicit request was cut to the cores, or None."""
        if self.requested and self.requested > self.cores:
            return (f"note: {self.requested} CPU threads asked for, but this process may use only {self.cores} "
                    f"core(s); using {self.cores}")
        return None

    def describe(self, threads: int) -> str:
        if self.requested and self.requested > self.cores:
            return f"{threads} CPU thread(s) ({self.requested} asked for, {self.cores} core(s) available)"
        if self.requested:
            return f"{threads} CPU thread(s), as asked"
        ceiling = f", ceiling {self.ceiling}" if self.ceiling else ""
        return f"{threads} CPU thread(s) ({self.cores} core(s) available{ceiling})"


def prepare(requested: int | None = None, ceiling: int | None = None, environ=None) -> ThreadBudget:
    """Call before torch is imported: waiting threads sleep rather than spin (unless the
    environment chose a policy), and the budget for `choose` is read (affinity, quota,
    OMP_NUM_THREADS and the launcher's `ceiling`, the smaller of the two)."""
    environ = os.environ if environ is None else environ
    environ.setdefault(WAIT_POLICY, "PASSIVE")
    from_environment = environment_ceiling(environ)
    ceilings = [c for c in (ceiling, from_environment) if c]
    return ThreadBudget(cores=available_cores(quota=cgroup_cpu_limit()), ceiling=min(ceilings) if ceilings else None,
                        requested=requested or None)

"""How much memory a dataset needs, and how much there is: data too large are refused before
anything is loaded, with both sizes, never an out-of-memory crash in the middle of a run."""

from __future__ import annotations

import os
from pathlib import Path

from src.errors import UserError


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, capped by a cgroup's limit (a
    container or a Slurm job); None when neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return max(min(found), 0)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def require_fits(needed: int, what: str, available: int | None = None) -> None:
    """UserError naming `what` and both sizes when `needed` bytes exceed what is available."""
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise UserError(f"{what} needs about {gib(needed)} of memory to load (the arrays as stored, their float32 "
                        f"tensors and the splits' copies), but {gib(available)} are available; use a machine with "
                        "more memory or a smaller dataset")


def load_bytes(stored: int, float_elements: int) -> int:
    """The peak of loading: the arrays as stored, plus float32 inputs twice (the normalised
    tensors and the splits cut from them)."""
    return stored + 2 * 4 * float_elements

"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc's malloc serves large blocks with fresh mmap()s and gives large freed ranges back
to the kernel. A training step on the CPU allocates and frees the same activations
every step (16 MB each for tiny_net_cifar at batch 128), so every step faulted them in
again, page by page, zeroed by the kernel: about 15% of a tiny_net_cifar step's CPU time
on the 2-core machine (benchmarks/README.md). Raising glibc's two thresholds lets freed
blocks be reused. The numbers computed are the same; the cost is that the process keeps
up to TRIM_THRESHOLD of freed memory.

Only glibc (Linux); elsewhere, or when the user tunes malloc through the environment,
nothing is changed. Torch-free: it can run first thing in a CLI.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # blocks below this come from the heap: glibc's largest allowed value
TRIM_THRESHOLD = 256 << 20  # free memory at the top of the heap kept before giving it back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory(environ=None) -> bool:
    """Raise glibc's mmap and trim thresholds; True if they were set."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or any(name in environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

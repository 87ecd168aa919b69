"""The audit's chains: their seeds and how many run as one ensemble.

Shared by the noisy phases (audit.py) and the trained starting points (worlds.py), which
import nothing from each other's module."""

from __future__ import annotations

from src.seeds import derive_seed

# Chains run as one ensemble at a time (memory: theta, noise and batches of a group).
GROUP = 512


def chain_seeds(seed: int, world: str, n: int) -> list[int]:
    """Independent chains: no two chains, in one world or across the two, share a seed."""
    return [derive_seed(seed, f"audit-{world}-chain-{i}") for i in range(n)]

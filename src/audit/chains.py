"""The audit's chains: their seeds, how many run as one ensemble, and weakened noise.

Shared by the noisy phases (audit.py), the trained starting points (worlds.py) and the
convex methods' chains (convex.py), which import nothing from each other's module."""

from __future__ import annotations

import torch

from src.seeds import derive_seed

# Chains run as one ensemble at a time (memory: theta, noise and batches of a group).
GROUP = 512


def chain_seeds(seed: int, world: str, n: int) -> list[int]:
    """Independent chains: no two chains, in one world or across the two, share a seed."""
    return [derive_seed(seed, f"audit-{world}-chain-{i}") for i in range(n)]


class WeakenedNoise:
    """Audit-only: every noise vector drawn, hence every sigma, multiplied by `scale`.

    It exists to show that the audit can fail: with less noise than the certificate
    assumes, the lower bound must rise above the certified epsilon. Nothing outside
    src/audit/ builds it, and no config key reaches it."""

    def __init__(self, noise, scale: float):
        self.noise, self.scale = noise, scale

    def add_(self, theta: torch.Tensor, sigma: float) -> None:
        self.noise.add_(theta, self.scale * sigma)

    def add_fresh_(self, theta: torch.Tensor, sigma: float) -> None:
        self.noise.add_fresh_(theta, self.scale * sigma)

"""Where the randomness of the privacy mechanisms comes from: a seed, or the OS.

Research mode (the default, `secure_rng: false`): seeded torch generators, one stream per
purpose (src/seeds.py), so that a run can be replayed. Whoever knows the config's seed can
replay the noise too, and subtract it from the released model: the certificate then holds
only while the seed stays private.

Release mode (`secure_rng: true`): every draw is read from the operating system's
cryptographic generator (os.urandom) at the moment it is needed, and nothing about it is
kept or written; no seed reproduces it. Gaussians come from the Box-Muller transform of
uniforms on the grid (k + 1/2) 2^-53, k a 53-bit random integer, computed in float64.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

_GRID = 2.0**-53


def os_uniform(n: int) -> np.ndarray:
    """n float64 uniforms in (0, 1) from os.urandom: (k + 1/2) 2^-53, k uniform on 53 bits."""
    k = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return (k.astype(np.float64) + 0.5) * _GRID


def os_gaussian(n: int) -> np.ndarray:
    """n float64 standard normals from os.urandom (Box-Muller, both outputs of each pair)."""
    pairs = (n + 1) // 2
    u = os_uniform(2 * pairs)
    radius = np.sqrt(-2.0 * np.log(u[:pairs]))
    angle = (2.0 * math.pi) * u[pairs:]
    return np.concatenate((radius * np.cos(angle), radius * np.sin(angle)))[:n]


class SeededRandomness:
    """A seeded torch generator (research mode): replayable from the seed."""

    secure = False

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def normal(self, n: int, device) -> torch.Tensor:
        return torch.randn(n, generator=self.generator, device=device)

    def normal_into(self, out: torch.Tensor) -> None:
        torch.randn(out.shape, generator=self.generator, device=out.device, out=out)

    def uniform64(self, n: int, device) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=device, dtype=torch.float64)


class OsRandomness:
    """The operating system's generator (release mode): nothing to replay, nothing stored."""

    secure = True

    def normal(self, n: int, device) -> torch.Tensor:
        return torch.from_numpy(os_gaussian(n).astype(np.float32)).to(device)

    def normal_into(self, out: torch.Tensor) -> None:
        out.copy_(self.normal(out.numel(), "cpu").view(out.shape))

    def uniform64(self, n: int, device) -> torch.Tensor:
        return torch.from_numpy(os_uniform(n)).to(device)


def randomness(secure: bool, seed: int, device) -> SeededRandomness | OsRandomness:
    """The source for one purpose: OS entropy in release mode, else a generator seeded by
    `seed` (already derived for its purpose)."""
    if secure:
        return OsRandomness()
    return SeededRandomness(torch.Generator(device=device).manual_seed(int(seed)))

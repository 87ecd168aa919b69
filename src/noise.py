"""The noise and projection primitives of the noisy steps: Gaussian noise drawn fresh for
every step (NoiseSource) and the L2 projection and clipping of the parameter vector.
Used by the unlearning algorithms, the trainer's post-unlearning clip and the ensemble,
so they live below all of them.
"""

from __future__ import annotations

import torch

from src.privacy.rounding import float32_at_least, radius_inside


# theta is [d] in a single run and [N, d] in an ensemble: norms are over the last axis,
# one per member (for [d] the same number as the norm of the whole vector).


def project_l2_(theta: torch.Tensor, radius: float) -> torch.Tensor:
    """theta <- theta * min(1, radius / ||theta||) in place (the reference's clip_params).

    The scale is computed in float64 towards a radius a hair inside `radius`
    (src/privacy/rounding.py): the float32 result's norm is then <= radius, where a
    float32 scale could leave it 1e-7 outside the ball the certificate assumes."""
    wide = theta.double()
    norm = torch.linalg.vector_norm(wide, dim=-1, keepdim=True)
    theta.copy_(wide * torch.clamp(radius_inside(radius) / norm, max=1.0).nan_to_num(1.0))
    return theta


def clip_l2(v: torch.Tensor, bound: float) -> torch.Tensor:
    """v * min(1, bound / ||v||), with norm <= bound after float32 rounding (as project_l2_)."""
    wide = v.double()
    norm = torch.linalg.vector_norm(wide, dim=-1, keepdim=True)
    return (wide * torch.clamp(radius_inside(bound) / norm, max=1.0).nan_to_num(1.0)).to(v.dtype)


class NoiseSource:
    """Gaussian noise for the noisy steps: fresh every draw, from a seeded generator
    (research mode) or the operating system (release mode, src/entropy.py).

    `reuse=True` (compat.reuse_noise) draws one vector and returns it every time, as the
    reference's jitted step did (D1); that voids the certificate. The scale multiplied in
    is the accounted sigma rounded UP to float32 (src/privacy/rounding.py).
    """

    def __init__(self, randomness, dimension: int, device, reuse: bool = False):
        self.randomness = randomness
        self.dimension = dimension
        self.device = device
        self.reuse = reuse
        self._fixed = None

    def add_fresh_(self, theta: torch.Tensor, sigma: float) -> None:
        """theta += sigma xi with an independent draw even under `reuse` (initial noise is
        drawn once anyway)."""
        theta.add_(self._sample(), alpha=float32_at_least(sigma))

    def add_(self, theta: torch.Tensor, sigma: float) -> None:
        """theta += sigma xi, xi the step's draw (the same vector every step under `reuse`)."""
        if self.reuse:
            if self._fixed is None:
                self._fixed = self._sample()
            xi = self._fixed
        else:
            xi = self._sample()
        theta.add_(xi, alpha=float32_at_least(sigma))

    def _sample(self) -> torch.Tensor:
        return self.randomness.normal(self.dimension, self.device)

"""Divergence: a loss or a parameter that is no longer a finite number ends the run.

A diverged model still "evaluates" (NaN logits give some accuracy), so without this a
run with a learning rate far too large, or an overflowing init_sigma, ends with a
certificate and lands in the figures. The checks run where the trainer logs anyway
(every evaluation, every epoch, every drained batch row), so they cost one reduction
over theta per evaluation and no extra host sync per step.
"""

from __future__ import annotations

import math

import torch

from src.errors import DivergedError


def non_finite_count(theta: torch.Tensor) -> int:
    return int((~torch.isfinite(theta.detach())).sum())


def require_finite(where: str, advice: str, theta: torch.Tensor | None = None, **values) -> None:
    """DivergedError naming what is not finite, where, and what to change."""
    parts = [f"{name.replace('_', ' ')} is {value}" for name, value in values.items()
             if isinstance(value, float) and not math.isfinite(value)]
    if theta is not None:
        bad = non_finite_count(theta)
        if bad:
            parts.append(f"{bad} of {theta.numel()} parameters are NaN or infinite")
    if parts:
        raise DivergedError(f"the run diverged {where}: {'; '.join(parts)}. Nothing of this run is recorded "
                            f"as finished; {advice}")

"""Optimizers and learning-rate schedules with the reference's (optax 0.2.4) semantics.

A schedule is a function of the number of updates already made (0 for the first
update), as optax evaluates it. PyTorch's OneCycleLR and CosineAnnealingLR are not
equivalent (upstream.md section 4.2), so the formulas are written out here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from src.config import OptimizerConfig

Schedule = Callable[[int], float]


def constant_schedule(max_lr: float) -> Schedule:
    return lambda step: max_lr


def cosine_schedule(max_lr: float, decay_steps: int) -> Schedule:
    """optax.cosine_decay_schedule(max_lr, decay_steps), alpha 0: stays at 0 after decay_steps."""
    decay_steps = max(int(decay_steps), 1)

    def lr(step: int) -> float:
        return max_lr * 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps))

    return lr


def onecycle_schedule(total_steps: int, max_lr: float) -> Schedule:
    """optax.linear_onecycle_schedule(total_steps, max_lr) with its defaults.

    Piecewise linear through (0, max/25), (int(0.3 T), max), (int(0.85 T), max/25) and
    (T, max/(25 * 1e4)), constant afterwards. optax gives NaN when two of these points
    coincide (T < 4); here a zero-length piece is simply skipped.
    """
    total_steps = int(total_steps)
    points = [(0, max_lr / 25), (int(0.3 * total_steps), max_lr), (int(0.85 * total_steps), max_lr / 25),
              (total_steps, max_lr / 25 / 1e4)]

    def lr(step: int) -> float:
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
            if x0 <= step < x1:
                return y0 + (step - x0) / (x1 - x0) * (y1 - y0)
        return points[-1][1] if step >= total_steps else points[0][1]

    return lr


def make_schedule(config: OptimizerConfig, total_steps: int) -> Schedule:
    """The phase's schedule over `total_steps` updates.

    The reference sized the cosine decay in epochs while counting steps (D6); here both
    onecycle and cos run over the phase's steps.
    """
    if config.lr_schedule == "constant":
        return constant_schedule(config.max_lr)
    if config.lr_schedule == "cos":
        return cosine_schedule(config.max_lr, total_steps)
    if config.lr_schedule == "onecycle":
        return onecycle_schedule(total_steps, config.max_lr)
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")


class OptaxRMSprop(torch.optim.Optimizer):
    """optax.rmsprop(lr): decay 0.9, eps 1e-8 inside the square root, zero initial scale.

    torch.optim.RMSprop puts eps outside the root and uses alpha 0.99 by default.
    Weight decay is added to the gradient first (optax add_decayed_weights).
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, decay: float = 0.9, eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, decay=decay, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "nu" not in state:
                    state["nu"] = torch.zeros_like(p)
                nu = state["nu"]
                nu.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                p.addcdiv_(g, nu.add(group["eps"]).sqrt_(), value=-group["lr"])


def make_optimizer(params, config: OptimizerConfig, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer of a phase; `weight_decay` is the phase's optimizer-level decay.

    SGD and RMSprop couple it to the gradient (optax add_decayed_weights), Adam is AdamW
    (decoupled, scaled by the learning rate), as in the reference's training phase.
    """
    if config.optim == "SGD":
        # optax's trace with momentum 0 makes nesterov a no-op; torch refuses the combination.
        nesterov = config.nesterov and config.momentum > 0
        return torch.optim.SGD(params, lr=config.max_lr, momentum=config.momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if config.optim == "RMSprop":
        return OptaxRMSprop(params, lr=config.max_lr, weight_decay=weight_decay)
    if config.optim == "Adam":
        return torch.optim.AdamW(params, lr=config.max_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {config.optim!r}")


class ScheduledOptimizer:
    """An optimizer whose learning rate follows an optax-style schedule of the update count."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule):
        self.optimizer = optimizer
        self.schedule = schedule
        self.step_count = 0

    def step(self) -> float:
        lr = self.schedule(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step_count += 1
        return lr

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

"""Optimizers and learning-rate schedules with the reference's (optax 0.2.4) semantics.

A schedule is a function of the number of updates already made (0 for the first
update), as optax evaluates it. PyTorch's OneCycleLR and CosineAnnealingLR are not
equivalent (the original code), so the formulas are written out here.
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


class FlatOptimizer:
    """An optimizer of the one parameter vector theta (src/training/flat_model.py).

    Written out rather than torch.optim: the formulas are optax's (tests/test_optim.py
    checks them), one vector needs no parameter groups, and constructing a torch.optim
    optimizer imports torch._dynamo, seconds per process.
    """

    def __init__(self, theta: torch.Tensor, weight_decay: float = 0.0):
        self.theta = theta
        self.weight_decay = weight_decay

    def _decayed_gradient(self) -> torch.Tensor:
        grad = self.theta.grad
        return grad.add(self.theta, alpha=self.weight_decay) if self.weight_decay else grad

    @torch.no_grad()
    def step(self, lr) -> None:
        """One update with learning rate `lr` (a number, or a 0-d tensor inside a CUDA graph)."""
        raise NotImplementedError

    def state_tensors(self) -> list[torch.Tensor]:
        """The per-coordinate state (momentum, moments), e.g. to freeze coordinates."""
        return [t for t in vars(self).values() if isinstance(t, torch.Tensor) and t is not self.theta]


class SGD(FlatOptimizer):
    """optax.sgd after add_decayed_weights: trace t = g + mu t_prev (first step t = g);
    nesterov uses g + mu t; theta -= lr * update."""

    def __init__(self, theta, weight_decay=0.0, momentum=0.0, nesterov=False):
        super().__init__(theta, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.trace = torch.zeros_like(theta) if momentum else None

    @torch.no_grad()
    def step(self, lr) -> None:
        update = self._decayed_gradient()
        if self.momentum:
            self.trace.mul_(self.momentum).add_(update)
            update = update.add(self.trace, alpha=self.momentum) if self.nesterov else self.trace
        self.theta.sub_(lr * update)


class RMSprop(FlatOptimizer):
    """optax.rmsprop: decay 0.9, eps 1e-8 inside the square root, zero initial scale
    (torch.optim.RMSprop puts eps outside the root and uses alpha 0.99)."""

    def __init__(self, theta, weight_decay=0.0, decay=0.9, eps=1e-8):
        super().__init__(theta, weight_decay)
        self.decay, self.eps, self.nu = decay, eps, torch.zeros_like(theta)

    @torch.no_grad()
    def step(self, lr) -> None:
        g = self._decayed_gradient()
        self.nu.mul_(self.decay).addcmul_(g, g, value=1 - self.decay)
        self.theta.sub_(lr * g / self.nu.add(self.eps).sqrt_())


class AdamW(FlatOptimizer):
    """optax.adamw (b1 0.9, b2 0.999, eps 1e-8 outside the root): decoupled decay lr * wd * theta."""

    def __init__(self, theta, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8):
        super().__init__(theta, 0.0)
        self.decoupled, self.b1, self.b2, self.eps = weight_decay, b1, b2, eps
        self.m, self.v, self.count = torch.zeros_like(theta), torch.zeros_like(theta), 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        g = self.theta.grad
        self.count += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1 ** self.count)
        v_hat = self.v / (1 - self.b2 ** self.count)
        update = m_hat / (v_hat.sqrt() + self.eps)
        if self.decoupled:
            update.add_(self.theta, alpha=self.decoupled)  # the pre-step theta, as optax and torch
        self.theta.sub_(lr * update)


def make_optimizer(theta: torch.Tensor, config: OptimizerConfig, weight_decay: float) -> FlatOptimizer:
    """The optimizer of a phase; `weight_decay` is the phase's optimizer-level decay.

    SGD and RMSprop couple it to the gradient (optax add_decayed_weights), Adam is AdamW
    (decoupled, scaled by the learning rate), as in the reference's training phase.
    """
    if config.optim == "SGD":
        return SGD(theta, weight_decay, momentum=config.momentum, nesterov=config.nesterov)
    if config.optim == "RMSprop":
        return RMSprop(theta, weight_decay)
    if config.optim == "Adam":
        return AdamW(theta, weight_decay)
    raise ValueError(f"unknown optimizer {config.optim!r}")


class ScheduledOptimizer:
    """An optimizer whose learning rate follows an optax-style schedule of the update count."""

    def __init__(self, optimizer: FlatOptimizer, schedule: Schedule):
        self.optimizer = optimizer
        self.schedule = schedule
        self.step_count = 0

    def step(self) -> float:
        lr = self.schedule(self.step_count)
        self.optimizer.step(lr)
        self.step_count += 1
        return lr

    def zero_grad(self) -> None:
        self.optimizer.theta.grad = None

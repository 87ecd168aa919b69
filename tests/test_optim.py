"""Optimizers and schedules follow optax's formulas (the original code)."""

from __future__ import annotations

import math

import pytest
import torch

from src.config import OptimizerConfig
from src.training.optim import (ScheduledOptimizer, constant_schedule, cosine_schedule, make_optimizer,
                                onecycle_schedule)


@pytest.mark.parametrize("total, b1, b2", [
    (3800, 1140, 3230), (15850, 4755, 13472), (17500, 5250, 14875), (9510, 2853, 8083),
    (12660, 3798, 10761), (140800, 42240, 119680),
])
def test_onecycle_boundary_table(total, b1, b2):
    lr = onecycle_schedule(total, 0.1)
    assert lr(0) == pytest.approx(0.1 / 25)
    assert lr(b1) == pytest.approx(0.1)
    assert lr(b1 - 1) < 0.1 and lr(b1 + 1) < 0.1
    assert lr(b2) == pytest.approx(0.1 / 25)
    assert lr(total) == pytest.approx(0.1 / 25 / 1e4)  # peak/(div*final_div), not peak/final_div
    assert lr(total + 1000) == pytest.approx(4e-6 * 0.1)
    # piecewise linear in between
    mid = (b1 + b2) // 2
    expected = 0.1 + (mid - b1) / (b2 - b1) * (0.1 / 25 - 0.1)
    assert lr(mid) == pytest.approx(expected)


def test_cosine_stays_at_zero_after_decay_and_constant_is_constant():
    lr = cosine_schedule(1.0, 100)
    assert lr(0) == 1.0 and lr(50) == pytest.approx(0.5) and lr(100) == pytest.approx(0.0) and lr(150) == lr(100)
    assert constant_schedule(0.3)(12345) == 0.3


def _one_step(config: OptimizerConfig, weight_decay: float, steps: int = 2):
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(10))
    start = theta.detach().clone()
    opt = ScheduledOptimizer(make_optimizer(theta, config, weight_decay), constant_schedule(config.max_lr))
    grads = [torch.randn(10) for _ in range(steps)]
    for g in grads:
        theta.grad = g.clone()
        opt.step()
    return start, grads, theta.detach()


def test_sgd_with_coupled_weight_decay_and_momentum_as_optax():
    config = OptimizerConfig(optim="SGD", max_lr=0.1, momentum=0.9, weight_decay=0.01)
    start, grads, end = _one_step(config, 0.01)
    theta, trace = start.clone(), torch.zeros(10)
    for g in grads:  # optax: add_decayed_weights then trace (new = g + mu*old), then -lr
        u = g + 0.01 * theta
        trace = u + 0.9 * trace
        theta = theta - 0.1 * trace
    assert torch.allclose(end, theta, atol=1e-6)


def test_nesterov_as_optax():
    config = OptimizerConfig(optim="SGD", max_lr=0.1, momentum=0.5, nesterov=True)
    start, grads, end = _one_step(config, 0.0, steps=3)
    theta, trace = start.clone(), torch.zeros(10)
    for g in grads:
        trace = g + 0.5 * trace
        theta = theta - 0.1 * (g + 0.5 * trace)
    assert torch.allclose(end, theta, atol=1e-6)


def test_rmsprop_eps_inside_the_root_as_optax():
    config = OptimizerConfig(optim="RMSprop", max_lr=0.01)
    start, grads, end = _one_step(config, 0.0)
    theta, nu = start.clone(), torch.zeros(10)
    for g in grads:
        nu = 0.9 * nu + 0.1 * g * g
        theta = theta - 0.01 * g / torch.sqrt(nu + 1e-8)
    assert torch.allclose(end, theta, atol=1e-6)


def test_adam_is_adamw_with_decoupled_decay():
    config = OptimizerConfig(optim="Adam", max_lr=0.01, weight_decay=0.1)
    start, grads, end = _one_step(config, 0.1)
    theta, m, v = start.clone(), torch.zeros(10), torch.zeros(10)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        theta = theta - 0.01 * (m_hat / (torch.sqrt(v_hat) + 1e-8) + 0.1 * theta)
    assert torch.allclose(end, theta, atol=1e-6)


def test_the_schedule_is_read_at_the_update_count():
    theta = torch.nn.Parameter(torch.zeros(1))
    opt = ScheduledOptimizer(make_optimizer(theta, OptimizerConfig(max_lr=1.0), 0.0), lambda step: float(step + 1))
    for expected_lr in (1.0, 2.0, 3.0):
        theta.grad = torch.ones(1)
        assert opt.step() == expected_lr
    assert theta.item() == pytest.approx(-(1 + 2 + 3))
    assert math.isclose(opt.step_count, 3)

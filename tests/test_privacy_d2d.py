"""The Descent-to-Delete accountant against the original code's numbers
(tests/data/langevin_reference.json) and the contraction it rests on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from src.privacy import d2d

REFERENCE = json.loads((Path(__file__).parent / "data" / "langevin_reference.json").read_text())
LAM = 1e-6


def constants(dataset: str):
    c = REFERENCE["constants"][dataset]
    n = c["n"]
    m = LAM * n
    L = c["L_base"] + m
    return n, m, L, c["M"], d2d.contraction(2 / (L + m), L, m)


@pytest.mark.parametrize("dataset", ["MNIST", "CIFAR10", "CIFAR10_MULTI"])
def test_secret_state_sigma_table(dataset):
    table = REFERENCE["d2d_secret_state_sigma"]
    n, m, L, M, gamma = constants(dataset)
    assert round(gamma, 4) == table[dataset]["gamma"]
    assert gamma == pytest.approx((L - m) / (L + m), rel=1e-14)
    for steps in ("1", "2", "5"):
        for eps, expected in zip(table["epsilons"], table[dataset][steps]):
            sigma = d2d.secret_state_sigma(int(steps), eps, 1 / n, 1, M, m, n, gamma)
            assert float(f"{sigma:.3g}") == expected, (steps, eps)


@pytest.mark.parametrize("dataset", ["CIFAR10_MULTI", "MNIST", "CIFAR10"])
def test_sequential_step_counts(dataset):
    table = REFERENCE["d2d_sequential_steps"][dataset]
    n, m, L, M, gamma = constants(dataset)
    for factor, expected in table.items():
        if factor in ("source", "d"):
            continue
        steps = [d2d.sequential_steps(i, 1.0, 1 / n, table["d"], gamma, float(factor)) for i in range(1, 101)]
        assert (steps[0], steps[-1]) == (expected["first"], expected["last"]), factor
        assert steps == sorted(steps)  # ln ln(4 d i / delta) grows with i
        if "sum" in expected:
            assert sum(steps) == expected["sum"]


def test_contraction_is_the_lipschitz_constant_of_a_gradient_step():
    """On a quadratic with Hessian eigenvalues in [m, L] the GD map's Lipschitz constant is
    exactly max |1 - eta h| over the spectrum."""
    m, L = 0.05, 1.05
    H = np.diag(np.linspace(m, L, 7))
    for eta in (0.3, 2 / (L + m), 1.5):
        step = np.eye(7) - eta * H
        assert np.linalg.norm(step, 2) == pytest.approx(d2d.contraction(eta, L, m), rel=1e-12)
    with pytest.raises(ValueError, match="does not contract"):
        d2d.contraction(2 / L, L, m)


def test_sigma_grows_with_the_group_and_falls_with_more_steps():
    n, m, L, M, gamma = constants("MNIST")
    one = d2d.secret_state_sigma(3, 1.0, 1e-5, 1, M, m, n, gamma)
    assert d2d.secret_state_sigma(3, 1.0, 1e-5, 7, M, m, n, gamma) == pytest.approx(7 * one)
    assert d2d.secret_state_sigma(4, 1.0, 1e-5, 1, M, m, n, gamma) < one
    # the secret-state radius recursion: r = gamma^I (r + 2 S M/(m n)) at its fixed point
    r = d2d.convergence_radius(3, 2, M, m, n, gamma)
    assert r == pytest.approx(gamma**3 * (r + 2 * 2 * M / (m * n)), rel=1e-12)
    assert math.isfinite(d2d.sequential_sigma(120, 1.0, 1e-5, M, m, n, gamma))

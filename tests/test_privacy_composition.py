"""Composition across deletion requests against independent computations: exact rational
sums, a dense grid over Renyi orders, and the hockey-stick divergence of composed
Gaussian mechanisms integrated numerically from their privacy-loss distributions."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import signal, stats

from src.privacy.composition import basic_composition, gaussian_composition, linear_rdp_composition, sum_up
from src.privacy.rdp import linear_rdp_to_dp
from src.privacy.rounding import round_up


def test_sums_are_rounded_up_never_below_the_exact_sum():
    rng = np.random.default_rng(0)
    below = 0
    for _ in range(2000):
        values = list(rng.exponential(size=rng.integers(2, 9)) * 10.0 ** rng.integers(-8, 2))
        exact = sum(map(Fraction, values))
        total = sum_up(values)
        assert Fraction(total) >= exact
        assert Fraction(math.nextafter(total, -math.inf)) < exact  # and at most one float above
        below += Fraction(math.fsum(values)) < exact
    assert below > 100  # the correctly rounded sum does fall below the exact one


def test_basic_composition_adds_epsilons_and_deltas():
    epsilon, delta = basic_composition([1.0, 1.0, 0.5], [1e-6, 2e-6, 3e-6])
    assert epsilon == 2.5 and Fraction(delta) >= Fraction(1e-6) + Fraction(2e-6) + Fraction(3e-6)
    assert delta == pytest.approx(6e-6, rel=1e-15)
    assert basic_composition([0.0, 0.0], [0.0, 0.0]) == (0.0, 0.0)
    assert basic_composition([1.0] * 3, [0.6] * 3)[1] == 1.0
    with pytest.raises(ValueError, match="one delta per epsilon"):
        basic_composition([1.0], [1e-6, 1e-6])
    with pytest.raises(ValueError, match="epsilons must be finite numbers >= 0"):
        basic_composition([math.inf], [1e-6])


def grid_epsilon(total_renyi, delta):
    """min over a dense grid of orders of the RDP -> DP formula, written out here."""
    alpha = 1.0 + np.exp(np.linspace(math.log(1e-4), math.log(1e5), 400_001))
    values = total_renyi * alpha + np.log1p(-1 / alpha) - (math.log(delta) + np.log(alpha)) / (alpha - 1)
    return float(values.min())


@pytest.mark.parametrize("renyis", [[0.0305566], [0.0305566] * 5, [0.01, 0.2, 0.05], [1.0] * 3])
def test_renyi_composition_is_one_conversion_of_the_summed_renyi_epsilons(renyis):
    epsilon, alpha = linear_rdp_composition(renyis, 1e-5)
    grid = grid_epsilon(sum(renyis), 1e-5)
    assert grid - 1e-9 <= epsilon <= grid + 1e-7
    assert epsilon == pytest.approx(round_up(linear_rdp_to_dp(sum_up(renyis), 1e-5)), rel=1e-12)  # printed up
    assert epsilon > linear_rdp_to_dp(sum_up(renyis), 1e-5)
    assert epsilon < sum(linear_rdp_to_dp(r, 1e-5) for r in renyis) or len(renyis) == 1


def composed_gaussian_delta(mus, epsilon, step=1e-4):
    """E_{e^eps}(P || Q) of the composed mechanisms = E_P[(1 - e^(eps - L))_+], where the
    privacy loss L under P is the sum of independent N(mu^2/2, mu^2), one per mechanism:
    its density by numerical convolution on a grid, the expectation by a Riemann sum."""
    density, start = np.ones(1) / step, 0.0
    for mu in mus:
        lo = mu * mu / 2 - 14 * mu
        grid = lo + step * np.arange(int(28 * mu / step) + 1)
        density = signal.fftconvolve(density, stats.norm.pdf(grid, mu * mu / 2, mu)) * step
        start += lo
    loss = start + step * np.arange(density.size)
    return float(np.sum(density * np.clip(-np.expm1(epsilon - loss), 0, None)) * step)


@pytest.mark.parametrize("mus", [[0.5], [0.5, 0.5], [1.0, 0.3], [0.2, 0.2]])
def test_gaussian_composition_meets_the_numerically_integrated_delta(mus):
    epsilon, mu = gaussian_composition(mus, 1e-5)
    assert mu == pytest.approx(math.sqrt(sum(m * m for m in mus)), rel=1e-15)
    assert mu >= math.sqrt(sum(m * m for m in mus))
    assert composed_gaussian_delta(mus, epsilon) <= 1e-5 * (1 + 1e-4)
    assert composed_gaussian_delta(mus, epsilon - 1e-3) > 1e-5  # and the smallest such epsilon


def test_gaussian_composition_edges():
    assert gaussian_composition([0.0, 0.0], 1e-5)[0] == 0.0
    # one mechanism: the analytic Gaussian mechanism's epsilon (Balle & Wang 2018)
    epsilon, _ = gaussian_composition([2 * 0.01 / 0.0969], 1e-5)
    assert epsilon < 1.0
    with pytest.raises(ValueError, match="delta must be a number in"):
        gaussian_composition([1.0], 0.0)

"""The audit's statistics (src/audit/bounds.py): Clopper-Pearson intervals, the epsilon
lower bound of two samples, and its validity on an exact Gaussian mechanism whose
epsilon is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from src.audit.bounds import ceiling, clopper_pearson, epsilon_from_rates, lower_bound
from src.privacy.gaussian import theta_eps


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon at delta of the Gaussian mechanism N(mu, 1) vs N(0, 1): the
    hockey-stick divergence theta_eps(mu) = delta (src/privacy/gaussian.py)."""
    return optimize.brentq(lambda eps: theta_eps(eps, mu) - delta, 0.0, 60.0)


# -- Clopper-Pearson ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 50, 2048])
@pytest.mark.parametrize("alpha", [0.025, 0.1])
def test_clopper_pearson_is_the_beta_quantile_and_inverts_the_binomial_tail(n, alpha):
    k = np.unique(np.linspace(0, n, 9).astype(int))
    lower, upper = clopper_pearson(k, n, alpha)
    inner = (k > 0) & (k < n)
    # scipy's beta quantiles: Beta(alpha; k, n-k+1) and Beta(1-alpha; k+1, n-k)
    assert np.allclose(lower[k > 0], stats.beta.ppf(alpha, k[k > 0], n - k[k > 0] + 1), rtol=1e-12)
    assert np.allclose(upper[k < n], stats.beta.ppf(1 - alpha, k[k < n] + 1, n - k[k < n]), rtol=1e-12)
    # what the quantiles mean: P[Bin(n, lower) >= k] = alpha = P[Bin(n, upper) <= k]
    assert np.allclose(stats.binom.sf(k[k > 0] - 1, n, lower[k > 0]), alpha, rtol=1e-6)
    assert np.allclose(stats.binom.cdf(k[k < n], n, upper[k < n]), alpha, rtol=1e-6)
    # the edges in closed form
    assert lower[k == 0].tolist() == [0.0] and upper[k == n].tolist() == [1.0]
    assert upper[k == 0][0] == pytest.approx(1 - alpha ** (1 / n), rel=1e-10)
    assert lower[k == n][0] == pytest.approx(alpha ** (1 / n), rel=1e-10)
    assert np.all(lower[inner] < k[inner] / n) and np.all(upper[inner] > k[inner] / n)


def test_clopper_pearson_covers_the_true_proportion():
    rng = np.random.default_rng(1)
    p, n, alpha, trials = 0.07, 60, 0.05, 4000
    k = rng.binomial(n, p, trials)
    lower, upper = clopper_pearson(k, n, alpha)
    assert np.mean(upper < p) <= alpha and np.mean(lower > p) <= alpha


def test_clopper_pearson_refuses_impossible_counts():
    with pytest.raises(ValueError):
        clopper_pearson(11, 10, 0.05)
    with pytest.raises(ValueError):
        clopper_pearson(1, 10, 1.5)


# -- the lower bound ------------------------------------------------------------------------


def test_the_ceiling_is_perfect_separation_in_closed_form():
    n, delta, confidence = 2048, 1e-5, 0.95
    a = 0.025 ** (1 / n)
    assert ceiling(n, delta, confidence) == pytest.approx(math.log((a - delta) / (1 - a)), rel=1e-10)
    rng = np.random.default_rng(0)
    separated = lower_bound(rng.normal(10, 1, 2 * n), rng.normal(-10, 1, 2 * n), delta, confidence)
    assert separated.epsilon == pytest.approx(separated.ceiling, rel=1e-12)
    assert separated.counts == (n, 0)


def test_identical_worlds_give_no_evidence():
    rng = np.random.default_rng(2)
    bounds = [lower_bound(rng.normal(size=(400, 3)), rng.normal(size=(400, 3)), 1e-5).epsilon for _ in range(20)]
    assert max(bounds) == 0.0


def test_the_test_is_chosen_on_one_half_and_bounded_on_the_other():
    """A score that separates the worlds only in the first half of the chains (where the
    test is chosen) shows nothing: the bound comes from the second half alone."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    a[:1000, 1] += 8.0  # spurious in the selection half only
    result = lower_bound(a, b, 1e-5)
    assert result.test.score == 1 and result.selection_bound > 4
    assert result.epsilon == 0.0
    # the same separation in the evaluation half is found
    a[1000:, 1] += 8.0
    assert lower_bound(a, b, 1e-5).epsilon > 4


def test_both_orders_and_both_sides_count():
    rng = np.random.default_rng(4)
    a, b = rng.normal(2.0, 1, 4000), rng.normal(0, 1, 4000)
    forward = lower_bound(a, b, 1e-5)
    assert forward.epsilon > 1
    assert lower_bound(b, a, 1e-5).epsilon == pytest.approx(forward.epsilon, rel=1e-12)
    assert lower_bound(-a, -b, 1e-5).epsilon == pytest.approx(forward.epsilon, rel=1e-12)


def test_a_gaussian_mechanism_bound_never_exceeds_its_epsilon_at_95_percent():
    """Over repeated audits of N(mu, 1) vs N(0, 1), the 95% lower bound exceeds the exact
    epsilon in at most 5% of the trials (Clopper-Pearson is conservative: ~none)."""
    rng = np.random.default_rng(5)
    for mu, delta in ((1.0, 1e-3), (0.5, 1e-2)):
        truth = gaussian_epsilon(mu, delta)
        bounds = np.array([lower_bound(rng.normal(mu, 1, 2000), rng.normal(0, 1, 2000), delta).epsilon
                           for _ in range(60)])
        assert np.mean(bounds > truth) <= 0.05, (mu, delta, truth, bounds.max())
        assert bounds.mean() > 0.2 * truth  # and it is a bound with some power


def test_a_gaussian_mechanism_bound_approaches_its_epsilon_as_n_grows():
    rng = np.random.default_rng(6)
    mu, delta = 0.5, 1e-2
    truth = gaussian_epsilon(mu, delta)
    assert truth == pytest.approx(0.919, abs=1e-3)
    medians = [np.median([lower_bound(rng.normal(mu, 1, n), rng.normal(0, 1, n), delta).epsilon
                          for _ in range(3)]) for n in (1_000, 10_000, 100_000, 1_000_000)]
    assert all(m <= truth for m in medians)
    assert medians == sorted(medians)
    assert medians[-1] > 0.9 * truth and medians[0] < 0.5 * truth


def test_epsilon_from_rates_is_the_kairouz_inequality():
    # p <= e^eps q + delta  <=>  eps >= ln((p - delta) / q)
    assert epsilon_from_rates(0.5, 0.1, 0.0) == pytest.approx(math.log(5))
    assert epsilon_from_rates(0.5, 0.1, 0.05) == pytest.approx(math.log(4.5))
    assert epsilon_from_rates(1e-6, 0.1, 1e-5) == -np.inf


# -- the Gaussian-DP estimate ----------------------------------------------------------------


def test_gaussian_epsilon_inverts_the_hockey_stick_divergence():
    from src.privacy.gaussian import gaussian_epsilon as library

    for mu, delta in ((0.268, 1e-5), (0.788, 1e-5), (1.505, 1e-5), (0.5, 1e-2), (3.0, 1e-6)):
        assert library(mu, delta) == pytest.approx(gaussian_epsilon(mu, delta), rel=1e-8)
    assert library(0.0, 1e-5) == 0.0 and library(1e-9, 1e-5) == 0.0  # theta_0 below delta: no epsilon needed
    # the original's calibration: its certified 7.08 is mu = 1.505; 1 is mu = 0.268 (delta = 1e-5)
    assert library(1.505, 1e-5) == pytest.approx(7.08, abs=0.01) and library(0.268, 1e-5) == pytest.approx(1.0, abs=0.01)


def mu_for(epsilon: float, delta: float) -> float:
    return optimize.brentq(lambda mu: gaussian_epsilon(mu, delta) - epsilon, 1e-3, 5)


def test_the_gaussian_estimate_recovers_the_epsilon_of_an_exact_gaussian_mechanism():
    """N(mu, 1) against N(0, 1) with 4,096 samples per world, at the original's calibration's
    certificate (7.08 at delta 1e-5): the estimate is within 10% of the true epsilon, and
    above it in no more than 5% of the audits (it is a lower confidence limit on mu)."""
    from src.audit.bounds import gaussian_estimate

    rng = np.random.default_rng(11)
    delta, n = 1e-5, 4096
    mu = mu_for(7.08, delta)
    estimates = np.array([gaussian_estimate(rng.normal(mu, 1, n), rng.normal(0, 1, n), delta).epsilon
                          for _ in range(40)])
    assert np.median(estimates) == pytest.approx(7.08, rel=0.10)
    assert np.mean(estimates > 7.08) <= 0.05
    one = gaussian_estimate(rng.normal(mu, 1, n), rng.normal(0, 1, n), delta)
    assert one.point_mu == pytest.approx(mu, rel=0.1) and one.mu < one.point_mu  # the confidence costs mu
    assert sum(one.chains) == 2 * n and one.as_dict()["assumption"].startswith("Gaussian")


@pytest.mark.parametrize("n, expected", [(1024, 2.6), (4096, 2.9), (16384, 3.1)])
def test_the_gaussian_estimate_of_the_original_calibration_instance(n, expected):
    """The instance the original's calibration audits from the two starts is a Gaussian of
    exact epsilon 3.33 (mu = 0.788); an independent computation expects the estimate at
    about 2.6, 2.9 and 3.1 with 1,024, 4,096 and 16,384 chains per world."""
    from src.audit.bounds import gaussian_estimate

    rng = np.random.default_rng(n)
    delta = 1e-5
    mu = mu_for(3.33, delta)
    estimates = [gaussian_estimate(rng.normal(mu / 2, 1, n), rng.normal(-mu / 2, 1, n), delta).epsilon
                 for _ in range(30)]
    assert np.median(estimates) == pytest.approx(expected, abs=0.15)
    assert max(estimates) < 3.33 * 1.1

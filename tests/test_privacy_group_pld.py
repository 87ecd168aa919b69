"""The exact group accountant of DP-SGD: against a Monte Carlo estimate of the privacy loss,
against dp-accounting's own subsampled Gaussian at k = 1, and never looser than the lemma."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from src.privacy.dpsgd import calibrate_noise_multiplier, dpsgd_epsilon, group_privacy_to_example
from src.privacy.dpsgd_calibration import calibrate_dp_sgd
from src.privacy.group_pld import binomial_group_weights, calibrate_exact_group, exact_group_delta


def monte_carlo_delta(sigma, q, steps, k, epsilon, n=60_000, seed=0):
    """delta(eps) = E[(1 - e^(eps - L))_+] of the composed privacy loss L, both directions,
    sampled directly: each step draws m ~ Bin(k, q) and x ~ N(m, sigma^2) (remove) or
    x ~ N(0, sigma^2) (add); L sums log of the mixture's density ratio. Returns (delta, its
    standard error)."""
    rng = np.random.default_rng(seed)
    m = np.arange(k + 1)
    log_w = stats.binom.logpmf(m, k, q)

    def log_ratio(x):  # log sum_m w_m N(x; m, s^2) / N(x; 0, s^2)
        return special.logsumexp(log_w[None, :] + (np.outer(x, m) - m**2 / 2) / sigma**2, axis=1)

    results = []
    for direction in ("remove", "add"):
        total = np.zeros(n)
        for _ in range(steps):
            shift = rng.binomial(k, q, size=n) if direction == "remove" else 0
            x = shift + sigma * rng.standard_normal(n)
            total += log_ratio(x) if direction == "remove" else -log_ratio(x)
        samples = np.clip(1 - np.exp(epsilon - total), 0, None)
        results.append((samples.mean(), samples.std() / math.sqrt(n)))
    return max(results)


@pytest.mark.parametrize("sigma, q, steps, k, epsilon", [(1.5, 0.2, 8, 3, 2.0), (2.0, 0.1, 20, 5, 1.5)])
def test_the_exact_delta_matches_a_monte_carlo_estimate(sigma, q, steps, k, epsilon):
    estimate, error = monte_carlo_delta(sigma, q, steps, k, epsilon)
    exact = exact_group_delta(sigma, q, steps, k, epsilon, discretization=1e-3)
    assert estimate > 1e-3  # a regime the sample resolves
    assert exact >= estimate - 4 * error  # an upper bound ...
    assert exact <= estimate + 4 * error + 0.02 * estimate  # ... and a tight one


def test_a_group_of_one_is_dp_accountings_subsampled_gaussian():
    from dp_accounting.pld import privacy_loss_distribution

    reference = privacy_loss_distribution.from_gaussian_mechanism(
        2.0, sampling_prob=0.05, value_discretization_interval=1e-3).self_compose(100).get_delta_for_epsilon(1.0)
    ours = exact_group_delta(2.0, 0.05, 100, 1, 1.0, discretization=1e-3)
    assert ours == pytest.approx(reference, rel=1e-3)


@pytest.mark.parametrize("q, steps, k", [(0.1, 20, 5), (0.01, 500, 50)])
def test_the_exact_accountant_is_never_looser_than_the_lemma(q, steps, k):
    target_epsilon, target_delta = 10.0, 1e-5
    eps1, delta1 = group_privacy_to_example(target_epsilon, target_delta, k)
    lemma = calibrate_noise_multiplier(eps1, delta1, q, steps).noise_multiplier
    # at the lemma's noise the exact group delta is already below the target ...
    assert exact_group_delta(lemma, q, steps, k, target_epsilon) <= target_delta
    # ... so the exact calibration needs no more noise, and its noise meets the target
    exact = calibrate_exact_group(target_epsilon, target_delta, q, steps, k, upper=lemma)
    assert exact.noise_multiplier <= lemma and exact.delta <= target_delta
    assert exact_group_delta(exact.noise_multiplier * 0.99, q, steps, k, target_epsilon) > target_delta  # and tight


def test_the_truncated_binomial_tail_is_accounted():
    sensitivities, probs, dropped = binomial_group_weights(225, 128 / 45000, 17600)
    assert probs.sum() == pytest.approx(1.0, rel=1e-15) and dropped * 17600 <= 1e-25
    assert stats.binom.sf(sensitivities[-1], 225, 128 / 45000) == pytest.approx(dropped, rel=1e-6)
    small = binomial_group_weights(3, 0.2, 8)
    assert small[2] == 0.0 and small[0].tolist() == [0, 1, 2, 3]


def test_the_calibration_certifies_the_group_target():
    calibration = calibrate_dp_sgd(target_epsilon=10, target_delta=1e-5, l2_norm_clip=1.0, batch_size=100, epochs=2,
                                   train_size=2000, forget_size=20, group_rule="exact", sampling="poisson")
    assert calibration.certificate_valid and calibration.certified_epsilon == 10
    assert calibration.noise_multiplier < calibration.lemma_noise_multiplier
    # the lemma's per-example accountant for comparison: its group guarantee at that noise
    q, steps = 100 / 2000, 2 * 20
    eps1 = dpsgd_epsilon(q, calibration.lemma_noise_multiplier, steps, group_privacy_to_example(10, 1e-5, 20)[1])
    assert 20 * eps1 <= 10 * (1 + 1e-3)


def independent_epsilon(sigma, q, steps, k, delta):
    """epsilon at delta of the noise, accounted by dp-accounting itself on a grid 7x finer
    than the calibration's default (pessimistic: an upper bound, within ~0.05% of the truth)."""
    from dp_accounting.pld import privacy_loss_distribution

    sensitivities, probs, _ = binomial_group_weights(k, q, steps)
    pld = privacy_loss_distribution.from_mixture_gaussian_mechanism(
        sigma, sensitivities, probs, pessimistic_estimate=True, value_discretization_interval=4e-4)
    return pld.self_compose(steps).get_epsilon_for_delta(delta)


# (rule, batch size, epochs, group): 3,600 examples at (epsilon 1, delta 1e-5). Before the
# fine grid the exact rule's noise had true epsilon 0.98 at batch 64 and the tight rule at
# k = 1 (RDP -> (eps, delta) conversion) 0.66.
@pytest.mark.parametrize("rule, batch_size, epochs, k", [("exact", 64, 3, 1), ("tight", 128, 5, 1),
                                                         ("exact", 128, 5, 5)])
def test_small_targets_are_calibrated_within_one_percent(rule, batch_size, epochs, k):
    calibration = calibrate_dp_sgd(target_epsilon=1.0, target_delta=1e-5, l2_norm_clip=1.0, batch_size=batch_size,
                                   epochs=epochs, train_size=3600, forget_size=k, group_rule=rule, sampling="poisson")
    assert calibration.certificate_valid and calibration.certified_epsilon <= 1.0
    true = independent_epsilon(calibration.noise_multiplier, calibration.accounted_sampling_rate, calibration.steps,
                               k, 1e-5)
    assert 0.99 <= true <= 1.0 and calibration.certified_delta <= 1e-5

"""Renyi DP of the Gaussian mechanism and RDP -> (eps, delta) conversions."""

import math

import numpy as np
import pytest

from src.privacy.rounding import below_target, round_up
from src.privacy.gaussian import analytic_gaussian_sigma
from src.privacy.rdp import (
    UPSTREAM_ALPHAS,
    calibrate_renyi_epsilon,
    gaussian_rdp,
    linear_rdp_to_dp,
    rdp_to_dp,
    upstream_rdp_to_dp,
)


def conversion_on_grid(rdp_values, alphas, delta):
    """Balle et al. 2020 / CKS Prop. 12 evaluated on an explicit grid (brute force)."""
    return rdp_values + np.log1p(-1 / alphas) - (np.log(delta) + np.log(alphas)) / (alphas - 1)


FINE_ALPHAS = 1 + np.exp(np.linspace(math.log(1e-7), math.log(1e8), 1_000_000))


def test_gaussian_rdp_closed_form():
    assert gaussian_rdp(2.0, 1.0, 1.0) == 1.0
    assert gaussian_rdp(10.0, 2.0, 4.0) == pytest.approx(10 * 4 / 32)
    np.testing.assert_allclose(gaussian_rdp(np.array([2.0, 4.0]), 1.0, 2.0), [0.25, 0.5])


@pytest.mark.parametrize("epsilon_renyi", [1e-4, 0.0306, 0.1, 1.0, 10.0, 100.0, 1000.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-9, 0.01])
def test_linear_conversion_is_the_minimum(epsilon_renyi, delta):
    epsilon, alpha = rdp_to_dp(lambda a: epsilon_renyi * a, delta)
    brute = conversion_on_grid(epsilon_renyi * FINE_ALPHAS, FINE_ALPHAS, delta)
    best = max(0.0, brute.min())  # an eps < 0 guarantee is reported as eps = 0
    # a much finer grid never beats the continuous minimiser by more than 1e-6 relative
    assert epsilon <= best * (1 + 1e-6)
    # and what is returned is the bound at the returned alpha (a valid certificate)
    bound_at_alpha = conversion_on_grid(epsilon_renyi * alpha, alpha, delta)
    assert epsilon == pytest.approx(max(0.0, bound_at_alpha), rel=1e-14)
    assert linear_rdp_to_dp(epsilon_renyi, delta) == epsilon


def test_linear_conversion_published_numbers():
    # docs/differences.md#renyi-conversion: eps_R = 1 at delta = 1e-5 certifies only eps = 7.077
    assert round(linear_rdp_to_dp(1.0, 1e-5), 3) == 7.077
    assert round(linear_rdp_to_dp(0.1, 1e-5), 2) == 1.91
    assert round(linear_rdp_to_dp(10.0, 1e-5), 1) == 30.1
    assert round(linear_rdp_to_dp(100.0, 1e-5)) == 166


def test_conversion_of_gaussian_rdp_is_valid_against_exact_delta():
    # The RDP route can only be looser than the exact (analytic) Gaussian privacy curve.
    sigma = 3.0
    epsilon, _ = rdp_to_dp(lambda a: gaussian_rdp(a, 1.0, sigma), 1e-5)
    assert epsilon > 0
    assert analytic_gaussian_sigma(epsilon, 1e-5, 1.0) <= sigma


def test_conversion_accepts_scalar_only_callables():
    def scalar_only(alpha):
        return 0.5 * float(alpha)

    assert rdp_to_dp(scalar_only, 1e-5)[0] == pytest.approx(linear_rdp_to_dp(0.5, 1e-5), rel=1e-12)


def test_conversion_is_never_negative():
    assert rdp_to_dp(lambda a: 0.0 * a, 1e-5)[0] == 0.0


def test_upstream_conversion_reproduces_published_epsilon():
    # values.json final_epsilon for every PABI case with eps_R in {0.1, 1, 10, 100}
    assert upstream_rdp_to_dp(1, 1e-5) == pytest.approx(1.0036092796323706, rel=1e-14)
    assert upstream_rdp_to_dp(0.1, 1e-5) == pytest.approx(0.10360927963237052, rel=1e-14)
    assert upstream_rdp_to_dp(10, 1e-5) == pytest.approx(10.00360927963237, rel=1e-14)
    assert upstream_rdp_to_dp(100, 1e-5) == pytest.approx(100.00360927963237, rel=1e-14)


def test_upstream_conversion_is_alpha_independent_shift():
    # eps_R is added outside the minimum: the shift is the same for every eps_R, and the
    # minimum sits on the grid's edge alpha = 1000
    shift = upstream_rdp_to_dp(0.0, 1e-5)
    assert shift == pytest.approx(0.0036092796323706, abs=1e-12)
    values = conversion_on_grid(0.0, UPSTREAM_ALPHAS, 1e-5)
    assert int(np.argmin(values)) == len(UPSTREAM_ALPHAS) - 1
    assert UPSTREAM_ALPHAS[0] == 1.001 and UPSTREAM_ALPHAS[-1] == 1000 and len(UPSTREAM_ALPHAS) == 10000


def test_calibrate_renyi_epsilon_hits_target_from_below():
    epsilon_renyi = calibrate_renyi_epsilon(1.0, 1e-5)
    assert epsilon_renyi == pytest.approx(0.031, abs=5e-4)
    achieved = linear_rdp_to_dp(epsilon_renyi, 1e-5)
    # two safety margins under the target, so that the printed (rounded-up) value is <= 1
    assert achieved <= below_target(1.0) and round_up(achieved) < 1.0
    assert achieved == pytest.approx(1.0, rel=3e-9)


@pytest.mark.parametrize("target,delta", [(0.1, 1e-5), (7.077, 1e-5), (50.0, 1e-8), (2.0, 0.01)])
def test_calibrate_renyi_epsilon_inverts_conversion(target, delta):
    epsilon_renyi = calibrate_renyi_epsilon(target, delta)
    achieved = linear_rdp_to_dp(epsilon_renyi, delta)
    assert achieved <= below_target(target) and round_up(achieved) < target
    assert achieved == pytest.approx(target, rel=3e-9)


def test_calibrated_renyi_epsilon_of_one_means_about_seven():
    assert calibrate_renyi_epsilon(linear_rdp_to_dp(1.0, 1e-5), 1e-5) == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize(
    "fn,args,name",
    [
        (linear_rdp_to_dp, (-1.0, 1e-5), "epsilon_renyi"),
        (linear_rdp_to_dp, (1.0, 0.0), "delta"),
        (linear_rdp_to_dp, (1.0, 1.0), "delta"),
        (upstream_rdp_to_dp, (math.inf, 1e-5), "epsilon_renyi"),
        (upstream_rdp_to_dp, (1.0, -1e-5), "delta"),
        (calibrate_renyi_epsilon, (0.0, 1e-5), "epsilon_target"),
        (calibrate_renyi_epsilon, (1.0, 2.0), "delta"),
        (gaussian_rdp, (1.0, 1.0, 1.0), "alpha"),
        (gaussian_rdp, (2.0, 1.0, 0.0), "sigma"),
    ],
)
def test_rdp_rejects_bad_arguments(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)

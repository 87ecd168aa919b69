"""Gaussian tail, hockey-stick divergence theta_eps(r) and Gaussian-mechanism sigma."""

import math

import mpmath
import numpy as np
import pytest

from reference_values import case_id, reference_cases
from src.privacy.gaussian import (
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    gaussian_tail,
    log_theta_eps,
    output_perturbation_sigma,
    theta_eps,
    theta_eps_upper,
)

THETA_CASES = reference_cases("theta_epsilon")
DP_BASELINE_CASES = reference_cases("dp_baseline_sigma")


def theta_high_precision(epsilon, r, digits=60):
    with mpmath.workdps(digits):
        eps, r = mpmath.mpf(epsilon), mpmath.mpf(r)
        tail = lambda x: mpmath.erfc(x / mpmath.sqrt(2)) / 2  # noqa: E731
        return tail(eps / r - r / 2) - mpmath.exp(eps) * tail(eps / r + r / 2)


# --- Gaussian tail -------------------------------------------------------------------


def test_gaussian_tail_known_values():
    assert gaussian_tail(0.0) == 0.5
    assert gaussian_tail(1.959963984540054) == pytest.approx(0.025, rel=1e-14)
    # far tail: Q(10) = 7.619853024160526e-24, Q(30) = 4.906713927148187e-198
    assert gaussian_tail(10.0) == pytest.approx(7.619853024160526e-24, rel=1e-13)
    assert gaussian_tail(30.0) == pytest.approx(4.906713927148187e-198, rel=1e-12)


def test_gaussian_tail_upstream_underflows_where_accurate_does_not():
    assert gaussian_tail(9.0, upstream=True) == 0.0
    assert gaussian_tail(9.0) == pytest.approx(1.1285884059538406e-19, rel=1e-13)
    assert gaussian_tail(1.0, upstream=True) == pytest.approx(gaussian_tail(1.0), rel=1e-15)


def test_gaussian_tail_is_vectorised():
    x = np.array([-1.0, 0.0, 1.0])
    out = gaussian_tail(x)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_allclose(out[0] + out[2], 1.0, rtol=1e-15)


# --- theta_eps -------------------------------------------------------------------------


@pytest.mark.parametrize("case", THETA_CASES, ids=[case_id(c) for c in THETA_CASES])
def test_theta_accurate_matches_high_precision(case):
    epsilon, r = case["inputs"]["epsilon"], case["inputs"]["r"]
    expected = case["high_precision_value"]
    ours = theta_eps(epsilon, r)
    if expected == 0.0:
        # the true value underflows float64 (e.g. exp(-r^-2 ...) ~ 1e-500)
        assert ours == 0.0 or ours < 1e-300
    else:
        assert ours == pytest.approx(expected, rel=1e-6)
        # and in fact far better than 1e-6
        assert ours == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("case", THETA_CASES, ids=[case_id(c) for c in THETA_CASES])
def test_theta_upstream_replays_reference(case):
    epsilon, r = case["inputs"]["epsilon"], case["inputs"]["r"]
    ours = theta_eps(epsilon, r, upstream=True)
    assert abs(ours - case["value"]) <= 1e-15 or ours == pytest.approx(case["value"], rel=1e-9)


def test_theta_cancellation_regime_is_accurate():
    # Both terms ~1e-23 and ~1e-88 while theta is 1e-3 of them: the naive difference
    # returns 0; ours must keep the digits.
    assert theta_eps(0.1, 0.01) == pytest.approx(7.857692771036772e-27, rel=1e-9)
    assert theta_eps(2.0, 0.1) == pytest.approx(3.7194507268047234e-91, rel=1e-9)
    assert theta_eps(0.1, 0.01, upstream=True) == 0.0


@pytest.mark.parametrize("epsilon,r", [(0.3, 3e-3), (1.0, 0.05), (3.0, 0.7), (0.0, 0.2), (10.0, 3.0), (0.5, 40.0)])
def test_theta_matches_mpmath_off_grid(epsilon, r):
    expected = theta_high_precision(epsilon, r)
    assert theta_eps(epsilon, r) == pytest.approx(float(expected), rel=1e-9)
    # log theta stays accurate where theta itself underflows (first case: ~1e-19500)
    assert log_theta_eps(epsilon, r) == pytest.approx(float(mpmath.log(expected)), rel=1e-10)


def test_theta_edge_conventions():
    assert theta_eps(1.0, 0.0) == 0.0
    assert theta_eps(0.0, 0.0) == 0.0
    assert theta_eps(1.0, math.inf) == 1.0
    assert theta_eps(math.inf, 2.0) == 0.0
    assert log_theta_eps(1.0, 0.0) == -math.inf


def test_theta_epsilon_zero_is_total_variation():
    # E_1(N(0,1) || N(r,1)) = TV = erf(r / (2 sqrt 2))
    for r in (0.1, 1.0, 3.0):
        assert theta_eps(0.0, r) == pytest.approx(math.erf(r / (2 * math.sqrt(2))), rel=1e-13)


def test_theta_is_monotone_in_r_and_epsilon():
    r = np.linspace(0.01, 8, 400)
    values = theta_eps(1.0, r)
    assert np.all(np.diff(values) > 0)
    eps = np.linspace(0, 6, 200)
    assert np.all(np.diff(theta_eps(eps, 2.0)) < 0)
    assert np.all((values >= 0) & (values <= 1))


def test_theta_vectorised_broadcasts_and_matches_scalar():
    eps = np.array([[0.1], [1.0], [2.0]])
    r = np.array([0.01, 0.5, 2.0, np.inf, 0.0])
    grid = theta_eps(eps, r)
    assert grid.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            assert grid[i, j] == theta_eps(float(eps[i, 0]), float(r[j]))
    assert isinstance(theta_eps(1.0, 2.0), float)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"epsilon": -0.1, "r": 1.0}, "epsilon"),
        ({"epsilon": 1.0, "r": -1.0}, "r"),
        ({"epsilon": math.nan, "r": 1.0}, "epsilon"),
    ],
)
def test_theta_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        theta_eps(**kwargs)


# --- noise calibration ----------------------------------------------------------------


@pytest.mark.parametrize("case", DP_BASELINE_CASES, ids=[case_id(c) for c in DP_BASELINE_CASES])
def test_output_perturbation_reproduces_reference(case):
    inputs = case["inputs"]
    ours = output_perturbation_sigma(inputs["epsilon"], inputs["delta"], inputs["init_model_clip"])
    # the reference computed in float32
    assert ours == pytest.approx(case["value"], rel=1e-6)
    assert ours == classical_gaussian_sigma(inputs["epsilon"], inputs["delta"], 2 * inputs["init_model_clip"])


def test_classical_sigma_closed_form():
    assert classical_gaussian_sigma(1.0, 1e-5, 1.0) == pytest.approx(4.844805262605389, rel=1e-14)
    assert classical_gaussian_sigma(0.5, 1e-5, 3.0) == pytest.approx(6 * 4.844805262605389, rel=1e-14)


@pytest.mark.parametrize(
    "epsilon,delta", [(1.0, 1e-5), (0.5, 1e-6), (2.0, 1e-3), (0.1, 1e-5), (5.0, 1e-10), (8.0, 1e-30)]
)
def test_analytic_sigma_matches_dp_accounting(epsilon, delta):
    dp_accounting = pytest.importorskip("dp_accounting")
    expected = dp_accounting.get_sigma_gaussian(epsilon, delta)
    assert analytic_gaussian_sigma(epsilon, delta, 1.0) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("epsilon,delta,sensitivity", [(1.0, 1e-5, 0.2), (0.3, 1e-7, 2.0), (4.0, 1e-12, 0.02)])
def test_analytic_sigma_is_smallest_valid(epsilon, delta, sensitivity):
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)
    assert theta_eps(epsilon, sensitivity / sigma) <= delta
    # 1e-9 less noise already breaks the guarantee: sigma is tight
    assert theta_eps(epsilon, sensitivity / (sigma * (1 - 1e-9))) > delta
    # and it never needs more noise than the classical mechanism (for epsilon < 1)
    if epsilon < 1:
        assert sigma < classical_gaussian_sigma(epsilon, delta, sensitivity)


def test_output_perturbation_analytic_option():
    sigma = output_perturbation_sigma(1.0, 1e-5, 0.1, calibration="analytic")
    assert sigma == analytic_gaussian_sigma(1.0, 1e-5, 0.2)
    assert sigma < output_perturbation_sigma(1.0, 1e-5, 0.1)
    with pytest.raises(ValueError, match="calibration"):
        output_perturbation_sigma(1.0, 1e-5, 0.1, calibration="exact")


@pytest.mark.parametrize(
    "fn,args,name",
    [
        (classical_gaussian_sigma, (0.0, 1e-5, 1.0), "epsilon"),
        (classical_gaussian_sigma, (-1.0, 1e-5, 1.0), "epsilon"),
        (classical_gaussian_sigma, (1.0, 0.0, 1.0), "delta"),
        (classical_gaussian_sigma, (1.0, 1.0, 1.0), "delta"),
        (classical_gaussian_sigma, (1.0, 1e-5, -1.0), "sensitivity"),
        (analytic_gaussian_sigma, (1.0, 1.5, 1.0), "delta"),
        (analytic_gaussian_sigma, (-0.5, 1e-5, 1.0), "epsilon"),
    ],
)
def test_sigma_rejects_bad_arguments(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


# --- theta_eps_upper: an upper bound everywhere (issue 26) -------------------------------


def test_theta_upper_bounds_the_exact_value_deep_in_the_tail():
    """Against mpmath at 80 digits, with theta down to the float64 floor: the first bound
    (relative error 6e-12 / r + 2e-12) fell short below ~1e-240, e.g. by 6e-11 at
    theta_5.41(0.145) ~ 1e-305, inside the (r, epsilon) range it was validated on."""
    for epsilon, r in ((5.407835166340009, 0.1450474924813028), (5.865756816598591, 0.16317032226588654),
                       (11.98063548918059, 0.3573410748589418), (19.08104327074788, 0.5076143694250005)):
        assert mpmath.mpf(theta_eps_upper(epsilon, r)) >= theta_high_precision(epsilon, r, 80)
    rng = np.random.default_rng(26)
    checked = 0
    while checked < 300:
        r, epsilon = 10 ** rng.uniform(-4, 1.6), rng.uniform(0, 100)
        value = theta_eps(epsilon, r)
        if not 0 < value < 1e-150:  # the far tail only: the range above is tested above
            continue
        exact = theta_high_precision(epsilon, r, 80)
        upper = theta_eps_upper(epsilon, r)
        assert mpmath.mpf(upper) >= exact, (epsilon, r)
        assert upper <= float(exact) * (1 + 1e-6) + 1e-320  # and not needlessly loose
        checked += 1


def test_theta_upper_covers_subnormal_values():
    epsilon, r = 38.0, 1.0  # theta ~ 1.2e-309, below the smallest normal float64
    assert 0 < theta_eps(epsilon, r) < np.finfo(float).tiny
    assert mpmath.mpf(theta_eps_upper(epsilon, r)) >= theta_high_precision(epsilon, r, 80)
    # theta_39(1) ~ 1e-326 underflows to 0 in float64: its upper bound is not 0 (no pure-DP claim)
    assert theta_eps(39.0, 1.0) == 0 and 0 < theta_eps_upper(39.0, 1.0) < 1e-322
    assert mpmath.mpf(theta_eps_upper(39.0, 1.0)) >= theta_high_precision(39.0, 1.0, 80)
    assert theta_eps_upper(1.0, 0.0) == 0 and theta_eps_upper(math.inf, 1.0) == 0  # exactly 0 there


@pytest.mark.parametrize("delta", [1e-250, 1e-280, 1e-300])
def test_analytic_sigma_certifies_far_in_the_tail_before_any_float32_rounding(delta):
    """The float64 sigma itself certifies (exact theta <= delta), not only after float32 rounding."""
    for epsilon in (0.5, 1.0, 4.0):
        sigma = analytic_gaussian_sigma(epsilon, delta, 1.0)
        assert theta_high_precision(epsilon, 1.0 / sigma, 80) <= delta

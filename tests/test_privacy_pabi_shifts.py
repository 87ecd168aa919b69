"""The PABI bound with non-negative shifts: the reference's decreasing schedule against an
independent solution of the constrained program (scipy's trust-constr on the raw shifts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from src.privacy.pabi import (pabi_certificate, pabi_prefix_renyi_epsilons, pabi_renyi_epsilon, pabi_sigmas,
                              pabi_steps, running_renyi_epsilons, scale_sigmas_to_renyi_epsilon, shift_bound)
from src.privacy.rdp import linear_rdp_to_dp

# (C0, C1, eta, lambda): the first two are the settings of the issue; the others vary C0,
# C1, eta and lambda around the reference's values.
SETTINGS = [(1, 10, 0.01, 50), (20, 10, 0.01, 50), (1, 1, 1e-3, 50), (10, 1, 1e-3, 50), (5, 1, 0.01, 10),
            (1, 10, 1e-3, 5), (0.5, 1, 0.01, 1), (2, 5, 0.01, 20), (3, 2, 0.005, 40)]


def closed_form_shifts(sigmas, diameter, c1, eta, lam):
    """The shifts after each step under the closed form's allocation a_t ~ rho^(T-1-t) sigma_t^2
    (what `eps_R = B^2 / (2 sum w^2 sigma^2)` silently assumes)."""
    T = len(sigmas)
    rho = 1 - eta * lam
    w = rho ** (T - 1 - np.arange(T))
    a = shift_bound(diameter, c1, eta, lam, T) * w * sigmas**2 / np.sum(w**2 * sigmas**2)
    z, shifts = diameter, []
    for t in range(T):
        z = rho * z + 2 * eta * c1 - a[t]
        shifts.append(z)
    return np.array(shifts)


def constrained_program(sigmas, diameter, c1, eta, lam, n):
    """min sum_{t<n} a_t^2 / (2 sigma_t^2) s.t. z_t = rho z_{t-1} + 2 eta C1 - a_t >= 0 (t < n),
    z_n = 0, a >= 0: solved directly over b_t = a_t / sigma_t by scipy's trust-constr."""
    rho, s, sig = 1 - eta * lam, 2 * eta * c1, np.asarray(sigmas[:n], dtype=float)
    # z_t = rho^t D + s sum_{i<=t} rho^(t-i) - sum_{i<=t} rho^(t-i) sigma_i b_i, linear in b
    powers = rho ** np.subtract.outer(np.arange(n), np.arange(n)).clip(min=0) * np.tri(n)
    A = powers * sig  # z = c - A b
    c = np.array([rho ** (t + 1) * diameter + s * sum(rho ** (t - i) for i in range(t + 1)) for t in range(n)])
    scale = c[-1]  # so that the solver works on numbers of order one
    c = c / scale  # b = scale * b', and b' solves the same program for c / scale
    # rows t < n-1: z_t >= 0; last row: z_n = 0; b >= 0
    lower = np.zeros(n)
    upper = np.where(np.arange(n) < n - 1, np.inf, 0.0)
    constraint = optimize.LinearConstraint(-A, lower - c, upper - c)
    start = np.full(n, c[-1] / A[-1].sum())
    result = optimize.minimize(lambda b: 0.5 * b @ b, start, jac=lambda b: b, hess=lambda b: np.eye(n),
                               method="trust-constr", bounds=optimize.Bounds(0, np.inf), constraints=[constraint],
                               options={"gtol": 1e-13, "xtol": 1e-15, "maxiter": 5000})
    assert result.constr_violation < 1e-9, result.message
    return result.fun * scale**2


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_bound_is_the_constrained_program_over_every_prefix(setting):
    c0, c1, eta, lam = setting
    T = pabi_steps(c0, c1, eta, lam).T
    sigmas = pabi_sigmas(T, 2 * c0, c1, eta, lam, 1.0, schedule="decreasing")
    prefix = pabi_prefix_renyi_epsilons(sigmas, eta, 2 * c0, c1, lam)
    for n in sorted({1, T // 2, T} - {0}):
        assert prefix[n - 1] == pytest.approx(constrained_program(sigmas, 2 * c0, c1, eta, lam, n), rel=1e-6)
    assert pabi_renyi_epsilon(sigmas, 2 * c0, c1, eta, lam) == pytest.approx(prefix.min(), rel=1e-15)


def test_the_closed_form_of_the_decreasing_schedule_needs_negative_shifts():
    # C0 = 20, C1 = 10, eta = 0.01, lambda = 50: the closed form's shift goes to -28.7
    T = pabi_steps(20, 10, 0.01, 50).T
    sigmas = pabi_sigmas(T, 40, 10, 0.01, 50, 1.0, schedule="decreasing")
    assert closed_form_shifts(sigmas, 40, 10, 0.01, 50).min() == pytest.approx(-28.736, abs=1e-3)
    # C0 = 1: the full program costs 1.42 where the closed form claims 1.0 ...
    T = pabi_steps(1, 10, 0.01, 50).T
    sigmas = pabi_sigmas(T, 2, 10, 0.01, 50, 1.0, schedule="decreasing")
    full = constrained_program(sigmas, 2, 10, 0.01, 50, T)
    assert full == pytest.approx(1.4198, abs=1e-4)
    assert pabi_prefix_renyi_epsilons(sigmas, 0.01, 2, 10, 50)[-1] == pytest.approx(full, rel=1e-6)
    # ... and the certificate is the best prefix: the later steps are post-processing
    best = min(constrained_program(sigmas, 2, 10, 0.01, 50, n) for n in range(1, T + 1))
    assert pabi_renyi_epsilon(sigmas, 2, 10, 0.01, 50) == pytest.approx(best, rel=1e-6)
    assert pabi_certificate(sigmas, 2, 10, 0.01, 50, 1e-5).epsilon == pytest.approx(linear_rdp_to_dp(best, 1e-5),
                                                                                    rel=1e-6)


def test_negative_shifts_are_common_and_the_constant_schedule_never_needs_them():
    negative = 0
    for c0, c1, eta, lam in SETTINGS:
        T = pabi_steps(c0, c1, eta, lam).T
        decreasing = pabi_sigmas(T, 2 * c0, c1, eta, lam, 1.0, schedule="decreasing")
        negative += closed_form_shifts(decreasing, 2 * c0, c1, eta, lam).min() < -1e-9
        constant = pabi_sigmas(T, 2 * c0, c1, eta, lam, 1.0)
        assert closed_form_shifts(constant, 2 * c0, c1, eta, lam).min() > -1e-9 * c0
        assert pabi_renyi_epsilon(constant, 2 * c0, c1, eta, lam) == pytest.approx(1.0, rel=1e-12)
    assert negative >= 6


@pytest.mark.parametrize("setting", SETTINGS[:2])
def test_a_calibrated_decreasing_schedule_certifies_its_target(setting):
    c0, c1, eta, lam = setting
    T = pabi_steps(c0, c1, eta, lam).T
    shape = pabi_sigmas(T, 2 * c0, c1, eta, lam, 0.5, schedule="decreasing")
    scaled = scale_sigmas_to_renyi_epsilon(shape, 2 * c0, c1, eta, lam, 0.5)
    best = min(constrained_program(scaled, 2 * c0, c1, eta, lam, n) for n in range(1, T + 1))
    assert pabi_renyi_epsilon(scaled, 2 * c0, c1, eta, lam) == pytest.approx(0.5, rel=1e-12)
    assert best == pytest.approx(0.5, rel=1e-6)
    assert np.all(np.diff(scaled) < 0)  # still decreasing


def test_running_bound_is_the_best_prefix_so_far():
    sigmas = pabi_sigmas(11, 40, 10, 0.01, 50, 1.0, schedule="decreasing")
    prefix = pabi_prefix_renyi_epsilons(sigmas, 0.01, 40, 10, 50)
    running = running_renyi_epsilons(sigmas, 0.01, 40, 10, 50)
    np.testing.assert_array_equal(running, np.minimum.accumulate(prefix))
    assert np.all(np.diff(running) <= 0) and running[-1] < prefix[-1]


def test_a_contraction_beyond_float64_is_refused():
    with pytest.raises(ValueError, match="weight decay contracts"):
        pabi_prefix_renyi_epsilons(np.ones(1000), 0.5, 2.0, 1.0, 1.999)
    assert math.isfinite(pabi_prefix_renyi_epsilons(np.ones(300), 0.5, 2.0, 1.0, 1.0)[-1])

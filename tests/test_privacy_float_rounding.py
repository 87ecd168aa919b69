"""The float32 rounding of the noisy updates: its bound against float32 arithmetic itself,
the Gaussian tail against the chi distribution, and the PABI shift it adds against the
closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from src.privacy.float_rounding import (gaussian_norm_bound, gradient_clipping_rounding_shift,
                                        noisy_iterate_norm_bound, rounding_error_bound)
from src.privacy.pabi import pabi_renyi_epsilon


def test_one_rounding_is_within_half_an_ulp_and_the_bound_is_nearly_attained():
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 7.0, 1e30, 1e-40):  # 1e-40: subnormal float32
        x = rng.standard_normal(1000) * scale
        error = np.linalg.norm(x.astype(np.float32).astype(float) - x)
        assert error <= rounding_error_bound(np.linalg.norm(x), x.size)
    # midpoints between float32 neighbours: every coordinate is rounded by half an ulp,
    # 2^-24 |x| just above a power of two
    x = np.full(100, 1.0 + 2.0**-24)
    error = np.linalg.norm(x.astype(np.float32).astype(float) - x)
    assert error == pytest.approx(rounding_error_bound(np.linalg.norm(x), x.size), rel=1e-6)


def test_the_gaussian_norm_bound_holds_against_the_chi_quantile():
    for d, tail in ((10, 1e-3), (3985, 1e-12), (100_000, 1e-20)):
        quantile = stats.chi.isf(tail, d)
        bound = gaussian_norm_bound(1.0, d, tail)
        assert quantile <= bound <= 1.3 * quantile


def test_float32_gradient_clipping_steps_stay_within_the_shift():
    """The five roundings of a step, in float32 against float64, for gradients that push
    the iterate hardest (the clipped direction of theta itself)."""
    rng = np.random.default_rng(1)
    d, eta, c1, lam, r0 = 500, 0.01, 5.0, 20.0, 1.0
    sigmas = np.full(50, 0.05)
    shift, radius = gradient_clipping_rounding_shift(r0, sigmas, eta, c1, lam, d, 1e-9)
    theta32 = (rng.standard_normal(d) * r0 / math.sqrt(d)).astype(np.float32)
    for sigma in sigmas:
        theta = theta32.astype(float)
        g = -c1 * theta / np.linalg.norm(theta)
        xi = rng.standard_normal(d).astype(np.float32)
        exact = theta - eta * (g + lam * theta) + sigma * xi.astype(float)
        u = g.astype(np.float32) + np.float32(lam) * theta32
        theta32 = (theta32 - np.float32(eta) * u) + np.float32(sigma) * xi
        assert np.linalg.norm(theta32.astype(float) - exact) <= shift / 2
        assert np.linalg.norm(theta32) <= radius


def test_the_iterate_bound_is_the_closed_form_without_decay():
    sigmas = np.full(30, 0.2)
    bound = noisy_iterate_norm_bound(1.0, sigmas, 0.1, 2.0, 0.0, 100, 1e-6)
    expected = 1.0 + 30 * 0.1 * 2.0 + math.sqrt(30) * 0.2 * (10 + math.sqrt(2 * math.log(60 / 1e-6)))
    assert bound == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("weight_decay", [0.0, 3.0])
def test_the_rounding_shift_enters_pabi_as_a_larger_gradient_clip(weight_decay):
    # s_t = 2 eta C1 + shift = 2 eta (C1 + shift / (2 eta)): the closed form of a constant schedule
    sigmas, eta, c1, diameter, shift = np.full(40, 0.3), 0.05, 1.0, 2.0, 1e-3
    with_shift = pabi_renyi_epsilon(sigmas, diameter, c1, eta, weight_decay, rounding_shift=shift)
    assert with_shift == pytest.approx(pabi_renyi_epsilon(sigmas, diameter, c1 + shift / (2 * eta), eta,
                                                          weight_decay), rel=1e-12)
    assert with_shift > pabi_renyi_epsilon(sigmas, diameter, c1, eta, weight_decay)


def test_the_mini_gradient_clipping_certificate_includes_the_margin():
    from src.config import load_config
    from src.privacy.rdp import linear_rdp_to_dp
    from src.runner import make_plan
    from tests.conftest import QUICKSTART

    plan = make_plan(load_config(QUICKSTART, ["unlearning.iteration.epsilon_target=null",
                                              "unlearning.iteration.epsilon_renyi_target=1"])).privacy
    without = linear_rdp_to_dp(1.0, 1e-5)  # what it printed before: eps_R = 1 exactly
    # the shift is 2 e with e = 2^-24 (2 eta (C1 + lambda R) + R + eta (C1 + lambda R) + 2 R) + floor
    details = plan.details
    r, eta, c1, lam = details["float32_iterate_bound"], 1e-4, 10.0, 750.0
    e = 2.0**-24 * (3 * eta * (c1 + lam * r) + 3 * r) + 5 * math.sqrt(3985) * 2.0**-150
    assert details["float32_rounding_shift"] == pytest.approx(2 * e, rel=1e-9)
    assert without < plan.certified_epsilon <= without * (1 + 5e-4)


def test_model_clipping_noise_before_projection_adds_the_rounding_distance():
    from src.privacy.contraction import step_radius

    d, r, eta, c1, sigma = 20_042, 0.625, 1e-4, 1.0, 0.5
    plain = step_radius(r, sigma, eta=eta, grad_clip=c1, noise_before_projection=True)
    rounded = step_radius(r, sigma, eta=eta, grad_clip=c1, noise_before_projection=True, num_parameters=d)
    e = 2 * (2.0**-24 * (r + eta * c1) + math.sqrt(d) * 2.0**-150)
    assert plain == 2 * (r + eta * c1) / sigma and rounded == pytest.approx(plain + 2 * e / sigma, rel=1e-12)
    # noise after the projection: the model is in the ball, and what follows the noise is post-processing
    assert step_radius(r, sigma, noise_before_projection=False, num_parameters=d) == 2 * r / sigma

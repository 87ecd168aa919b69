"""Gradient Clipping (PABI): number of steps, sigma_t, Renyi bound and certificate."""

import math

import mpmath
import numpy as np
import pytest

from reference_values import case_id, reference_cases
from src.privacy.pabi import (
    PabiSteps,
    init_ball_radius,
    pabi_certificate,
    pabi_renyi_epsilon,
    scale_sigmas_to_renyi_epsilon,
    pabi_sigmas,
    pabi_steps,
    published_pabi_epsilon,
    running_renyi_epsilons,
    shift_bound,
)
from src.privacy.rdp import calibrate_renyi_epsilon, linear_rdp_to_dp

PABI_CASES = reference_cases("pabi")
IDS = [case_id(c) for c in PABI_CASES]


def case_setup(case):
    i = case["inputs"]
    steps = pabi_steps(i["init_model_clip"], i["grad_clip"], i["eta"], i["weight_decay"])
    diameter = 2 * init_ball_radius(i["init_model_clip"], i["init_model_clip_type"], num_parameters=1)
    return i, steps, diameter


def reference_sigmas_float32(i, T):
    """The reference's lambda != 0 constant-noise formula in float32 arithmetic (its JAX
    default): sigma^2 = B_T^2 eta*lambda (2 - eta*lambda) / (2 eps_R (1 - rho^(2T)))."""
    f = np.float32
    eta, lam, eps_r = f(i["eta"]), f(i["weight_decay"]), f(i["epsilon_renyi_target"])
    rho = f(1) - eta * lam
    rho_t, rho_2t = f(rho**f(T)), f(rho ** f(2 * T))
    b_t = f(2 * i["init_model_clip"]) * rho_t + f(f(2) * f(i["grad_clip"]) / lam) * (f(1) - rho_t)
    variance = (b_t * b_t) * (eta * lam * (f(2) - eta * lam)) / (f(2) * eps_r * (f(1) - rho_2t))
    return float(np.sqrt(f(variance)))


def sigma_high_precision(i, T):
    """The same formula (constant schedule, lambda != 0) in 50-digit arithmetic."""
    with mpmath.workdps(50):
        eta, lam = mpmath.mpf(i["eta"]), mpmath.mpf(i["weight_decay"])
        rho = 1 - eta * lam
        b_t = 2 * mpmath.mpf(i["init_model_clip"]) * rho**T + 2 * mpmath.mpf(i["grad_clip"]) / lam * (1 - rho**T)
        eps_r = mpmath.mpf(i["epsilon_renyi_target"])
        variance = b_t**2 * eta * lam * (2 - eta * lam) / (2 * eps_r * (1 - rho ** (2 * T)))
        return float(mpmath.sqrt(variance))


def reference_sigma_pairs(sigmas, value):
    pairs = [(sigmas[0], value["sigma_t_first"]), (sigmas[-1], value["sigma_t_last"])]
    if "sigma_t_all" in value:
        assert len(value["sigma_t_all"]) == len(sigmas)
        pairs += list(zip(sigmas, value["sigma_t_all"]))
    if "sigma_t_first5" in value:
        pairs += list(zip(sigmas[:5], value["sigma_t_first5"])) + list(zip(sigmas[-5:], value["sigma_t_last5"]))
    return pairs


@pytest.mark.parametrize("case", PABI_CASES, ids=IDS)
def test_pabi_steps_match_reference(case):
    _, steps, _ = case_setup(case)
    value = case["value"]
    assert isinstance(steps, PabiSteps) and isinstance(steps.T, int)
    assert steps.T == value["pabi_steps_T"]
    assert steps.T_base == value["T_without_regularisation_shortcut"]
    assert steps.regularised == value["reg_shortcut_used"]


@pytest.mark.parametrize("case", PABI_CASES, ids=IDS)
def test_pabi_sigmas_match_reference(case):
    i, steps, diameter = case_setup(case)
    # the weight_decay = 0 variants follow the reference's lambda = 0 formula (D2)
    sigmas = pabi_sigmas(
        steps.T, diameter, i["grad_clip"], i["eta"], i["weight_decay"], i["epsilon_renyi_target"],
        schedule=i["noise_schedule"], lambda0="upstream",
    )
    assert sigmas.shape == (steps.T,)
    tolerance = 1e-6
    if i["weight_decay"] != 0 and i["noise_schedule"] == "constant":
        # The reference evaluated this formula in float32. Replaying that reproduces its
        # numbers; where float32 cancellation in 1 - rho^T (eta*lambda = 5e-5) moves them
        # by more than 1e-6 from the exact value, ours follow the exact value instead.
        reference = case["value"]["sigma_t_first"]
        replay = reference_sigmas_float32(i, steps.T)
        assert replay == pytest.approx(reference, rel=2e-7)
        exact = sigma_high_precision(i, steps.T)
        assert sigmas[0] == pytest.approx(exact, rel=1e-12)
        tolerance = max(tolerance, 1.5 * abs(replay - exact) / reference)
        assert tolerance < 1e-5
    for ours, reference in reference_sigma_pairs(sigmas, case["value"]):
        assert ours == pytest.approx(reference, rel=tolerance)


@pytest.mark.parametrize("case", PABI_CASES, ids=IDS)
def test_pabi_published_epsilon_matches_reference(case):
    i = case["inputs"]
    assert published_pabi_epsilon(i["epsilon_renyi_target"], i["delta"]) == pytest.approx(
        case["value"]["final_epsilon"], rel=1e-12
    )


@pytest.mark.parametrize("case", PABI_CASES, ids=IDS)
def test_renyi_epsilon_of_sigmas_returns_target(case):
    i, steps, diameter = case_setup(case)
    args = (diameter, i["grad_clip"], i["eta"], i["weight_decay"])
    eps_r = i["epsilon_renyi_target"]
    sigmas = pabi_sigmas(steps.T, *args, eps_r, schedule="constant")
    assert pabi_renyi_epsilon(sigmas, *args) == pytest.approx(eps_r, rel=1e-12)
    # the decreasing shape, rescaled, certifies the target exactly (its closed form does not)
    decreasing = pabi_sigmas(steps.T, *args, eps_r, schedule="decreasing")
    scaled = scale_sigmas_to_renyi_epsilon(decreasing, *args, eps_r)
    assert pabi_renyi_epsilon(scaled, *args) == pytest.approx(eps_r, rel=1e-12)
    np.testing.assert_allclose(scaled / decreasing, scaled[0] / decreasing[0], rtol=1e-14)
    upstream = pabi_sigmas(steps.T, *args, eps_r, schedule=i["noise_schedule"], lambda0="upstream")
    # D2: the lambda = 0 branch halves the variance, so its bound is 2 eps_R
    expected = 2 * eps_r if i["weight_decay"] == 0 else pabi_renyi_epsilon(
        pabi_sigmas(steps.T, *args, eps_r, schedule=i["noise_schedule"]), *args)
    assert pabi_renyi_epsilon(upstream, *args) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("case", PABI_CASES, ids=IDS)
def test_certificate_correct_vs_upstream(case):
    i, steps, diameter = case_setup(case)
    args = (diameter, i["grad_clip"], i["eta"], i["weight_decay"])
    sigmas = pabi_sigmas(steps.T, *args, i["epsilon_renyi_target"], schedule=i["noise_schedule"])
    correct = pabi_certificate(sigmas, *args, i["delta"])
    upstream = pabi_certificate(sigmas, *args, i["delta"], conversion="upstream")
    assert correct.conversion == "correct" and upstream.conversion == "upstream"
    eps_r = pabi_renyi_epsilon(sigmas, *args)  # the target itself for a constant schedule
    if i["noise_schedule"] == "constant":
        assert eps_r == pytest.approx(i["epsilon_renyi_target"], rel=1e-12)
    assert correct.epsilon_renyi == upstream.epsilon_renyi == eps_r
    # the correct conversion, rounded up by the safety margin
    assert linear_rdp_to_dp(eps_r, i["delta"]) < correct.epsilon <= linear_rdp_to_dp(eps_r, i["delta"]) * (1 + 2e-9)
    if i["noise_schedule"] == "constant":
        assert upstream.epsilon == pytest.approx(case["value"]["final_epsilon"], rel=1e-9)
        assert correct.epsilon > upstream.epsilon
    assert correct.alpha > 1 and upstream.alpha is None
    assert correct.delta == upstream.delta == i["delta"]


def test_certified_vs_published_epsilon_at_renyi_one():
    assert round(linear_rdp_to_dp(1.0, 1e-5), 3) == 7.077
    assert round(published_pabi_epsilon(1.0, 1e-5), 4) == 1.0036


def test_steps_closed_forms_and_shortcut():
    # T_base = ceil(C0 / (C1 eta)); T_reg = ceil(ln(2 lambda C0 / C1) / (eta lambda))
    assert pabi_steps(1, 1, 1e-3, 0) == PabiSteps(T=1000, T_base=1000, T_reg=None, regularised=False)
    steps = pabi_steps(1, 1, 1e-3, 50)
    assert steps == PabiSteps(T=93, T_base=1000, T_reg=math.ceil(math.log(100) / 0.05), regularised=True)
    # a negative T_reg is reported but not used
    steps = pabi_steps(0.1, 10, 1e-3, 1)
    assert steps.T == steps.T_base == 10 and steps.T_reg < 0 and not steps.regularised


def test_shift_bound_limits():
    # lambda = 0: D + 2 C1 eta T; small lambda tends to it continuously
    assert shift_bound(0.2, 10, 1e-3, 0, 10) == pytest.approx(0.2 + 2 * 10 * 1e-3 * 10, rel=1e-15)
    assert shift_bound(0.2, 10, 1e-3, 1e-9, 10) == pytest.approx(0.4, rel=1e-9)
    # closed form at lambda != 0
    rho = 1 - 1e-3 * 50
    expected = 2 * rho**93 + (2 * 1 / 50) * (1 - rho**93)
    assert shift_bound(2.0, 1, 1e-3, 50, 93) == pytest.approx(expected, rel=1e-13)


def test_unified_lambda0_is_the_limit_of_lambda_nonzero():
    args = (20, 0.2, 10, 1e-3)
    at_zero = pabi_sigmas(*args, 0, 1.0)
    near_zero = pabi_sigmas(*args, 1e-10, 1.0)
    np.testing.assert_allclose(at_zero, near_zero, rtol=1e-8)
    upstream = pabi_sigmas(*args, 0, 1.0, lambda0="upstream")
    np.testing.assert_allclose(upstream, at_zero / math.sqrt(2), rtol=1e-14)
    # at lambda = 0 the schedule has nothing to decrease (rho = 1)
    np.testing.assert_array_equal(pabi_sigmas(*args, 0, 1.0, schedule="decreasing"), at_zero)


def test_decreasing_schedule_shape():
    sigmas = pabi_sigmas(93, 2.0, 1, 1e-3, 50, 1.0, schedule="decreasing")
    assert np.all(np.diff(sigmas) < 0)
    rho = 1 - 1e-3 * 50
    np.testing.assert_allclose(sigmas[:-1] / sigmas[1:], 1 / rho, rtol=1e-12)
    b_t = shift_bound(2.0, 1, 1e-3, 50, 93)
    assert sigmas[-1] == pytest.approx(math.sqrt(b_t**2 / (2 * 1.0 * 93)), rel=1e-13)


def test_renyi_epsilon_scales_inversely_with_variance():
    sigmas = pabi_sigmas(5, 2.0, 10, 1e-2, 50, 1.0)
    args = (2.0, 10, 1e-2, 50)
    assert pabi_renyi_epsilon(sigmas * 2, *args) == pytest.approx(0.25, rel=1e-12)


def test_sigma_for_a_certified_epsilon_of_one():
    eps_r = calibrate_renyi_epsilon(1.0, 1e-5)
    base = pabi_sigmas(93, 2.0, 1, 1e-3, 50, 1.0)
    certified = pabi_sigmas(93, 2.0, 1, 1e-3, 50, eps_r)
    np.testing.assert_allclose(certified / base, math.sqrt(1.0 / eps_r), rtol=1e-12)
    cert = pabi_certificate(certified, 2.0, 1, 1e-3, 50, 1e-5)
    assert cert.epsilon <= 1.0 and cert.epsilon == pytest.approx(1.0, rel=1e-9)


def test_init_ball_radius():
    assert init_ball_radius(0.5, "clip", 20042) == 0.5
    assert init_ball_radius(0.5, "clamp", 20042) == pytest.approx(0.5 * math.sqrt(20042))
    with pytest.raises(ValueError, match="clip_type"):
        init_ball_radius(0.5, "box", 10)
    with pytest.raises(ValueError, match="num_parameters"):
        init_ball_radius(0.5, "clamp", 0)


@pytest.mark.parametrize("schedule", ["constant", "decreasing"])
@pytest.mark.parametrize("weight_decay", [0, 50])
def test_running_renyi_epsilons_end_at_the_final_bound(schedule, weight_decay):
    steps = pabi_steps(1, 1, 1e-3, weight_decay)
    args = (2.0, 1, 1e-3, weight_decay)
    sigmas = pabi_sigmas(min(steps.T, 200), *args, 1.0, schedule=schedule)
    running = running_renyi_epsilons(sigmas, 1e-3, 2.0, 1, weight_decay)
    assert running.shape == sigmas.shape
    assert running[-1] == pytest.approx(pabi_renyi_epsilon(sigmas, *args), rel=1e-12)
    # the intermediate values are the bound of the first n steps
    for n in (1, 2, len(sigmas) // 2):
        assert running[n - 1] == pytest.approx(pabi_renyi_epsilon(sigmas[:n], *args), rel=1e-12)


def test_running_renyi_epsilons_with_varying_eta():
    # two steps by hand: A_1 = rho_0 D + 2 eta_0 C1, A_2 = rho_1 A_1 + 2 eta_1 C1,
    # V_2 = rho_1^2 sigma_0^2 + sigma_1^2
    d, c1, lam = 2.0, 1.0, 10.0
    etas, sigmas = np.array([1e-2, 5e-3]), np.array([0.3, 0.2])
    rho = 1 - etas * lam
    a1 = rho[0] * d + 2 * etas[0] * c1
    a2 = rho[1] * a1 + 2 * etas[1] * c1
    expected = [0.5 * a1**2 / sigmas[0] ** 2, 0.5 * a2**2 / (rho[1] ** 2 * sigmas[0] ** 2 + sigmas[1] ** 2)]
    np.testing.assert_allclose(running_renyi_epsilons(sigmas, etas, d, c1, lam), expected, rtol=1e-14)


@pytest.mark.parametrize(
    "fn,args,kwargs,name",
    [
        (pabi_steps, (0, 1, 1e-3, 0), {}, "init_model_clip"),
        (pabi_steps, (1, 0, 1e-3, 0), {}, "grad_clip"),
        (pabi_steps, (1, 1, -1e-3, 0), {}, "eta"),
        (pabi_steps, (1, 1, 1e-3, -1), {}, "weight_decay"),
        (shift_bound, (2.0, 1, 0.1, 10, 5), {}, "eta \\* weight_decay"),
        (pabi_sigmas, (0, 2.0, 1, 1e-3, 0, 1.0), {}, "T"),
        (pabi_sigmas, (5, 2.0, 1, 1e-3, 0, 0.0), {}, "epsilon_renyi"),
        (pabi_sigmas, (5, 2.0, 1, 1e-3, 0, 1.0), {"schedule": "linear"}, "schedule"),
        (pabi_sigmas, (5, 2.0, 1, 1e-3, 0, 1.0), {"lambda0": "half"}, "lambda0"),
        (pabi_renyi_epsilon, ([0.1, 0.0], 2.0, 1, 1e-3, 0), {}, "sigmas"),
        (pabi_renyi_epsilon, ([], 2.0, 1, 1e-3, 0), {}, "sigmas"),
        (pabi_certificate, ([0.1], 2.0, 1, 1e-3, 0, 1e-5), {"conversion": "fast"}, "conversion"),
        (pabi_certificate, ([0.1], 2.0, 1, 1e-3, 0, 0.0), {}, "delta"),
    ],
)
def test_pabi_rejects_bad_arguments(fn, args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(*args, **kwargs)

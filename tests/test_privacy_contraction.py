"""Model Clipping: the contraction-coefficient delta recursion."""

import math
import time

import mpmath
import numpy as np
import pytest

from reference_values import case_id, reference_cases
from src.privacy.contraction import (
    ContractionTrajectory,
    contraction_gamma,
    delta_trajectory,
    eps_tilde,
    initial_delta,
    step_radius,
    stop_step,
)
from src.privacy.gaussian import theta_eps, theta_eps_upper

CC_CASES = reference_cases("cc_delta_trajectory")
IDS = [case_id(c) for c in CC_CASES]


def radius_of(inputs):
    return step_radius(
        inputs["model_clip"], inputs["sigma"], eta=inputs["eta"], grad_clip=inputs["grad_clip"],
        noise_before_projection=inputs["noise_addition_before_projection"],
    )


def trajectory_of(case, upstream):
    i = case["inputs"]
    delta0 = initial_delta(i["epsilon"], i["init_model_clip"], i["init_sigma"], upstream=upstream)
    return delta0, delta_trajectory(i["epsilon"], delta0, radius_of(i), i["target_delta"], upstream=upstream)


def reference_pairs(delta0, trajectory, value):
    """(ours, reference) for every delta / gamma the reference reports."""
    pairs = [(delta0, value["delta_0"])]
    pairs += list(zip(trajectory.deltas, value["first_steps_delta"]))
    pairs += list(zip(trajectory.gammas, value["first_steps_gamma"]))
    pairs += [(trajectory.delta_after(int(n)), d) for n, d in value["delta_after_T_steps"].items()]
    if value["delta_at_stop"] is not None:
        pairs.append((trajectory.deltas[-1], value["delta_at_stop"]))
    return pairs


def gamma_high_precision(epsilon, delta, r):
    with mpmath.workdps(60):
        eps_t = mpmath.log(1 + (mpmath.e ** mpmath.mpf(epsilon) - 1) / mpmath.mpf(delta))
        r = mpmath.mpf(r)
        tail = lambda x: mpmath.erfc(x / mpmath.sqrt(2)) / 2  # noqa: E731
        return float(tail(eps_t / r - r / 2) - mpmath.exp(eps_t) * tail(eps_t / r + r / 2))


@pytest.mark.parametrize("case", CC_CASES, ids=IDS)
def test_step_radius_matches_reference(case):
    assert radius_of(case["inputs"]) == case["inputs"]["r_per_step"]


@pytest.mark.parametrize("case", CC_CASES, ids=IDS)
def test_upstream_trajectory_replays_reference(case):
    value = case["value"]
    delta0, trajectory = trajectory_of(case, upstream=True)
    assert trajectory.stop_step == value["stop_step"]
    assert trajectory.steps_evaluated == value["steps_evaluated"]
    for ours, reference in reference_pairs(delta0, trajectory, value):
        if reference == 0.0:
            assert ours == 0.0  # the reference's 1 - erf underflowed to exactly 0
        else:
            assert ours == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize("case", CC_CASES, ids=IDS)
def test_accurate_trajectory_agrees_with_reference(case):
    value = case["value"]
    i = case["inputs"]
    delta0, trajectory = trajectory_of(case, upstream=False)
    assert trajectory.stop_step == value["stop_step"]
    assert delta0 == pytest.approx(value["delta_0"], rel=1e-10)  # an upper bound, within theta's error
    # The reference's theta carries an absolute error ~e^eps~ * 2^-52 from its 1 - erf.
    # Where that is not negligible next to gamma (or gamma underflowed to 0), the
    # reference has no correct digits to compare with: use 60-digit arithmetic instead.
    reference_is_exact = True
    delta = delta0
    for n, (gamma, reference) in enumerate(zip(trajectory.gammas, value["first_steps_gamma"]), start=1):
        reference_error = math.exp(eps_tilde(i["epsilon"], delta)) * 2.0**-52
        if reference != 0.0 and reference_error < 1e-8 * reference:
            assert gamma == pytest.approx(reference, rel=1e-6)
        else:
            reference_is_exact = False
            assert gamma == pytest.approx(gamma_high_precision(i["epsilon"], delta, radius_of(i)), rel=1e-9)
        delta = trajectory.deltas[n - 1]
        if reference_is_exact:
            assert delta == pytest.approx(value["first_steps_delta"][n - 1], rel=1e-6)
    for n, reference in value["delta_after_T_steps"].items():
        if int(n) <= len(value["first_steps_gamma"]) and reference_is_exact:
            assert trajectory.delta_after(int(n)) == pytest.approx(reference, rel=1e-6)


def test_reference_r2_sequence():
    # the original code: r = 2: gamma = 0.5099, 0.4237, 0.3002; delta 2.65e-8 after step 6
    trajectory = delta_trajectory(1.0, 1.0, 2.0, 1e-5)
    np.testing.assert_allclose(trajectory.gammas[:3], [0.5099, 0.4237, 0.3002], atol=1e-4)
    assert trajectory.stop_step == 6
    assert trajectory.deltas[-1] == pytest.approx(2.6534110547323484e-08, rel=1e-6)


@pytest.mark.parametrize("r,steps", [(2.0, 6), (2.5, 9), (3.9, 36), (0.2, 1)])
def test_stop_steps_of_shipped_configs(r, steps):
    assert stop_step(1.0, 1.0, r, 1e-5) == steps
    assert stop_step(1.0, 1.0, r, 1e-5, upstream=True) == steps


def test_never_stopping_recursion_is_fast_and_reported():
    started = time.perf_counter()
    for upstream in (False, True):
        trajectory = delta_trajectory(1.0, 1.0, 20.2, 1e-5, upstream=upstream)
        assert trajectory.stop_step is None
        assert trajectory.fixed_point and trajectory.steps_evaluated == 200_000
        assert trajectory.delta_after(10_000) == 1.0
        assert trajectory.delta_after(200_000) == 1.0
        with pytest.raises(ValueError, match="n="):
            trajectory.delta_after(200_001)
    assert time.perf_counter() - started < 1.0


def test_gamma_is_theta_of_eps_tilde():
    for delta in (1.0, 0.3, 1e-3, 1e-12):
        et = math.log(1 + (math.e - 1) / delta)
        assert eps_tilde(1.0, delta) == pytest.approx(et, rel=1e-14)
        # an upper bound on theta: raised by theta's rounding error, and no more
        exact = gamma_high_precision(1.0, delta, 2.0)
        assert exact <= contraction_gamma(1.0, delta, 2.0) <= exact * (1 + 1e-10)
        assert contraction_gamma(1.0, delta, 2.0) == theta_eps_upper(eps_tilde(1.0, delta), 2.0)
    assert eps_tilde(1.0, 0.0) == math.inf
    assert contraction_gamma(1.0, 0.0, 2.0) == 0.0
    assert eps_tilde(0.0, 0.5) == 0.0
    # stable for delta far below 1/e^eps
    assert eps_tilde(1.0, 1e-300) == pytest.approx(math.log(math.e - 1) + 300 * math.log(10), rel=1e-14)


def test_per_step_radii_sequence():
    # a radius that varies with eta_t, e.g. a decaying schedule
    etas = 1e-2 * 0.5 ** np.arange(50)
    radii = [step_radius(0.5, 0.5, eta=eta, grad_clip=10.0, noise_before_projection=True) for eta in etas]
    trajectory = delta_trajectory(1.0, 1.0, iter(radii), 1e-5)
    delta = 1.0
    for n, r in enumerate(radii[: trajectory.stop_step]):
        delta *= contraction_gamma(1.0, delta, r)
        assert trajectory.deltas[n] == delta
    assert trajectory.deltas[-1] <= 1e-5 < trajectory.deltas[-2]
    # a sequence that ends first: no stop step, the whole sequence is recorded
    short = delta_trajectory(1.0, 1.0, radii[:3], 1e-5)
    assert short.stop_step is None and len(short.deltas) == short.steps_evaluated == 3


def test_initial_delta():
    assert initial_delta(1.0, 7.0, 0.0) == 1.0
    assert initial_delta(1.0, 7.0, 7.0) == theta_eps_upper(1.0, 2.0) == pytest.approx(0.50986166005467, rel=1e-11)
    assert initial_delta(1.0, 7.0, 7.0) > theta_eps(1.0, 2.0)
    assert isinstance(ContractionTrajectory(), ContractionTrajectory)


def test_step_radius_refuses_unanalysed_settings():
    assert step_radius(0.5, 0.5, noise_before_projection=False) == 2.0
    assert step_radius(0.5, 0.5, eta=0.01, grad_clip=10.0, noise_before_projection=True) == 2 * (0.5 + 0.1) / 0.5
    with pytest.raises(ValueError, match="noise_before_projection"):
        step_radius(0.5, 0.5, eta=0.01, grad_clip=10.0, noise_before_projection=False)
    with pytest.raises(ValueError, match="noise_before_projection"):
        step_radius(0.5, 0.5, noise_before_projection=True)
    with pytest.raises(ValueError, match="eta"):
        step_radius(0.5, 0.5, grad_clip=1.0, noise_before_projection=True)


@pytest.mark.parametrize(
    "fn,args,kwargs,name",
    [
        (eps_tilde, (-1.0, 0.5), {}, "epsilon"),
        (eps_tilde, (1.0, 1.5), {}, "delta"),
        (initial_delta, (1.0, -1.0, 1.0), {}, "init_model_clip"),
        (initial_delta, (1.0, 1.0, -1.0), {}, "init_sigma"),
        (step_radius, (0.5, 0.0), {"noise_before_projection": False}, "sigma"),
        (step_radius, (-0.5, 1.0), {"noise_before_projection": False}, "model_clip"),
        (delta_trajectory, (1.0, 2.0, 2.0, 1e-5), {}, "delta0"),
        (delta_trajectory, (1.0, 1.0, 2.0, -1e-5), {}, "target_delta"),
        (delta_trajectory, (1.0, 1.0, -2.0, 1e-5), {}, "radius"),
        (delta_trajectory, (1.0, 1.0, 2.0, 1e-5), {"max_steps": -1}, "max_steps"),
        (delta_trajectory, (1.0, 1.0, [2.0], 1e-5), {"max_steps": 3}, "max_steps"),
    ],
)
def test_contraction_rejects_bad_arguments(fn, args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(*args, **kwargs)


# --- the far tail (issue 26) --------------------------------------------------------------------------


def test_eps_tilde_of_a_large_epsilon_does_not_overflow():
    """expm1(1000) overflows float64 ("math range error" for model clipping at epsilon 1000)."""
    assert eps_tilde(1000.0, 1e-5) == pytest.approx(1000.0 + math.log(1e5), rel=1e-15)
    assert eps_tilde(40.0, 1e-5) == pytest.approx(float(mpmath.log(1 + mpmath.expm1(40) / mpmath.mpf("1e-5"))),
                                                  rel=1e-14)


def test_a_delta_that_underflows_is_never_stated_as_zero():
    """r = 0.02 from delta 1 (model_clip 1e-4 with sigma 0.01, the mini config): the next delta
    is ~1e-549 in exact arithmetic, 0.0 in float64, which would read as pure DP. The
    recursion states the floor instead, an upper bound."""
    from src.privacy.contraction import DELTA_FLOOR

    trajectory = delta_trajectory(1.0, 1.0, 0.02, 1e-5)
    assert trajectory.stop_step == 1 and trajectory.deltas[0] == DELTA_FLOOR == 1e-300
    with mpmath.workdps(80):  # theta_{eps~}(r) * delta_0, kept as an mpmath number (float would be 0)
        delta0 = mpmath.mpf(1)
        eps_t = mpmath.log(1 + (mpmath.e - 1) / delta0)
        r = mpmath.mpf("0.02")
        tail = lambda x: mpmath.erfc(x / mpmath.sqrt(2)) / 2  # noqa: E731
        exact = (tail(eps_t / r - r / 2) - mpmath.exp(eps_t) * tail(eps_t / r + r / 2)) * delta0
        assert 0 < exact < mpmath.mpf("1e-300") and float(exact) == 0.0
    assert trajectory.deltas[0] >= exact

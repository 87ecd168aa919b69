"""Every rounding a certificate rests on falls on the safe side: noise scales, radii, clamp
bounds, Bernoulli rates and calibrations, each against an exact (or 60-digit) value."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from src.config import load_config
from src.entropy import SeededRandomness
from src.noise import NoiseSource, clip_l2, project_l2_
from src.privacy.dpsgd_calibration import calibrate_dp_sgd
from src.privacy.gaussian import analytic_gaussian_sigma, theta_eps, theta_eps_upper
from src.privacy.rounding import (SAFETY_MARGIN, bernoulli_rate_bound, below_target, float32_at_least,
                                  float32_at_most, radius_inside, round_up)
from src.runner import attach_run, make_plan
from src.training.trainer import build_model
from tests.conftest import QUICKSTART


def theta_exact(epsilon, r):
    with mpmath.workdps(60):
        eps, r = mpmath.mpf(epsilon), mpmath.mpf(r)
        return mpmath.ncdf(-eps / r + r / 2) - mpmath.exp(eps) * mpmath.ncdf(-eps / r - r / 2)


# -- noise scales --------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.7, 0.09689610451459885, 1 / 3, 12.754315882469376, 1e-30, 3.0])
def test_a_noise_scale_is_never_rounded_below_the_accounted_sigma(sigma):
    drawn = float32_at_least(sigma)
    assert drawn >= sigma and float(np.float32(drawn)) == drawn
    assert drawn <= sigma * (1 + 2**-23) or sigma < 1e-37  # the next float32 up, no further
    # torch rounds a Python float to the NEAREST float32: 0.7 becomes 0.699999988
    if float(np.float32(sigma)) < sigma:
        assert float(torch.tensor(sigma, dtype=torch.float32)) < sigma <= drawn


def test_the_noise_source_adds_sigma_rounded_up():
    class Ones:
        def normal(self, n, device):
            return torch.ones(n)

    theta = torch.zeros(5)
    NoiseSource(Ones(), 5, "cpu").add_(theta, 0.7)
    assert float(theta[0]) >= 0.7 > float(np.float32(0.7))
    with pytest.raises(ValueError, match="float32"):
        float32_at_least(1e39)


def test_gradient_clipping_draws_at_least_its_sigmas():
    overrides = ["unlearning.algorithm=iteration"]
    config = load_config(QUICKSTART, overrides)
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"))

    class Recorder:
        def __init__(self):
            self.scales = []

        def add_(self, theta, sigma):
            self.scales.append(float32_at_least(sigma))

    algorithm.context.noise = Recorder()
    model = build_model(config, plan.input_shape, "cpu")
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    for step in range(3):
        algorithm.noisy_step(model, x, y, step)
    assert all(drawn >= sigma for drawn, sigma in zip(algorithm.context.noise.scales, plan.privacy.sigma_t))


# -- radii: projections, clips, clamps -------------------------------------------------------


def test_the_float32_projection_never_leaves_the_ball():
    # theta * (7 / ||theta||) in float32 lands above 7 (7.0000015 for some seeds); the
    # projection must not (its norm, computed in float64, is <= C0)
    for seed in range(30):
        theta = torch.randn(3985, generator=torch.Generator().manual_seed(seed)) * 3
        projected = project_l2_(theta.clone(), 7.0)
        assert torch.linalg.vector_norm(projected.double()).item() <= 7.0
        assert torch.linalg.vector_norm(projected.double()).item() >= 7.0 * (1 - 2e-6)
        clipped = clip_l2(theta, 0.5)
        assert torch.linalg.vector_norm(clipped.double()).item() <= 0.5
    # inside the ball, nothing moves
    small = torch.full((10,), 0.1)
    assert torch.equal(project_l2_(small.clone(), 7.0), small)


def test_the_clamp_bound_is_the_largest_float32_not_above_c0():
    assert float(np.float32(0.1)) > 0.1  # a clamp at float32(0.1) would leave the box
    bound = float32_at_most(0.1)
    assert bound <= 0.1 and float(np.float32(bound)) == bound
    assert float(np.nextafter(np.float32(bound), np.float32(1))) > 0.1
    config = load_config(QUICKSTART, ["unlearning.init_model_clip_type=clamp", "unlearning.init_model_clip=0.1"])
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"))
    model = build_model(config, plan.input_shape, "cpu")
    with torch.no_grad():
        model.theta.mul_(100)
    algorithm.prepare(model, lambda row: None)
    assert model.theta.detach().double().abs().max().item() <= 0.1
    assert radius_inside(7.0) < 7.0


# -- Bernoulli rates ---------------------------------------------------------------------------


def test_poisson_sampling_is_accounted_at_the_largest_rate_a_float64_draw_can_have():
    q = 128 / 45000
    bound = bernoulli_rate_bound(q)
    grid = 2.0**-53
    # CPU uniforms k 2^-53: ceil(q / grid) of them are < q; CUDA's (k + 1/2) 2^-53 one more at most
    assert bound == (math.ceil(q / grid) + 1) * grid and q < bound < q * (1 + 1e-13)
    assert bernoulli_rate_bound(0.0) == 0.0 and bernoulli_rate_bound(1.0) == 1.0
    calibration = calibrate_dp_sgd(target_epsilon=50, target_delta=1e-5, l2_norm_clip=0.5, batch_size=128, epochs=2,
                                   train_size=1000, forget_size=9, group_rule="tight", sampling="poisson")
    assert calibration.accounted_sampling_rate == bernoulli_rate_bound(128 / 1000) > calibration.sampling_rate
    # fixed-size batches certify nothing and keep the reference's rate
    shuffled = calibrate_dp_sgd(target_epsilon=50, target_delta=1e-5, l2_norm_clip=0.5, batch_size=128, epochs=2,
                                train_size=1000, forget_size=9, group_rule="upstream", sampling="shuffle")
    assert shuffled.accounted_sampling_rate == 128 / 1000


def test_the_dp_sgd_noise_std_is_rounded_up():
    from src.data.base_datamodule import Split
    from src.models.model import ModelFactory
    from src.training.dp_sgd import DPSGD
    from src.training.flat_model import FlatModel

    calibration = calibrate_dp_sgd(target_epsilon=50, target_delta=1e-5, l2_norm_clip=0.7, batch_size=128, epochs=2,
                                   train_size=1000, forget_size=9, group_rule="tight", sampling="poisson")
    model = FlatModel(ModelFactory.create_model("three_layer_net", 10, (512,), seed=0))
    dp = DPSGD(calibration, model, Split(torch.zeros(1000, 512), torch.zeros(1000, dtype=torch.long)), 128, seed=1)
    assert dp.noise_std >= 0.7 * calibration.noise_multiplier and float(np.float32(dp.noise_std)) == dp.noise_std
    assert isinstance(dp.membership, SeededRandomness)


# -- calibrations --------------------------------------------------------------------------------


# (epsilon, delta, sensitivity) where the plain evaluation put the calibrated sigma's exact
# delta above the target (found against mpmath: up to 1.7e-12 relative above)
ANALYTIC_CASES = [(0.1, 1e-10, 2.0), (0.1, 1e-6, 0.02), (0.1, 1e-3, 0.2), (0.5, 1e-3, 0.02), (1.0, 1e-5, 2.0),
                  (5.0, 1e-5, 0.02), (0.1, 1e-3, 0.02), (0.1, 1e-6, 2.0)]


@pytest.mark.parametrize("epsilon, delta, sensitivity", ANALYTIC_CASES)
def test_the_analytic_calibration_lands_below_the_target_exactly(epsilon, delta, sensitivity):
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)
    exact = theta_exact(epsilon, mpmath.mpf(sensitivity) / mpmath.mpf(sigma))
    assert exact <= delta
    assert float(exact) == pytest.approx(delta, rel=1e-8)  # and not much below


def test_theta_upper_bounds_theta_against_60_digits():
    for r in (1e-3, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0):
        for epsilon in (0.0, 0.01, 0.5, 1.0, 5.0, 20.0):
            exact = theta_exact(epsilon, r)
            if exact < 1e-300:
                continue
            assert theta_eps_upper(epsilon, r) >= exact
            assert abs(theta_eps(epsilon, r) - exact) / exact <= 3e-12 / r  # the error the bound is built on


def test_margins_compose_to_a_printed_value_below_the_target():
    target = 1.0
    computed = below_target(target) * (1 + 0.9 * SAFETY_MARGIN)  # within one margin of the aim
    assert round_up(computed) < target
    assert round_up(None) is None and round_up(math.inf) == math.inf

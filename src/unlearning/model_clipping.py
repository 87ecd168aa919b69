"""Model Clipping (config name "contractive_coefficients"): noisy SGD projected onto a
small ball, certified by contraction coefficients (paper eq. 4; the original code).

    theta_{t+1} = clip(theta_t - eta (g_t + lambda theta_t), R) + sigma xi_t
    (or, with `grad_clip`: the whole update clipped to C1 and the noise added before the
    projection)

Each step contracts the hockey-stick divergence by gamma_t = theta_{eps~}(r); the noisy
phase ends at the first step where delta_t <= unlearning.delta. That step depends on no
data, so the dry-run knows it (src/privacy/contraction.py).
"""

from __future__ import annotations

import math
from functools import cached_property

import torch

from pydantic import Field

from src.certificates import ComposedCertificate, PrivacyPlan, certificate_row
from src.config import FiniteFloat, OptionalClip, Section
from src.errors import ConfigError
from src.noise import clip_l2, project_l2_
from src.privacy.composition import gaussian_composition
from src.privacy.contraction import DELTA_FLOOR, delta_trajectory, initial_delta, step_radius
from src.privacy.pabi import init_ball_radius
from src.training.optim import make_schedule
from src.unlearning.base import StepResult, UnlearningAlgorithm, batch_loss_and_grad, require_plain_sgd, require_section
from src.unlearning.initial_projection import initial_projection_


class ContractiveConfig(Section):
    """`unlearning.contractive_coefficients:` the keys of Model Clipping."""

    epsilon_target: FiniteFloat = Field(gt=0)
    sigma: FiniteFloat = Field(gt=0)
    model_clip: FiniteFloat = Field(gt=0)
    grad_clip: OptionalClip = False
    noise_addition_after_projection: bool = False
    noise_addition_before_projection: bool = False


class ModelClipping(UnlearningAlgorithm):
    name = "contractive_coefficients"
    vectorised = True  # runs on theta [N, d] (seeds: N)
    section = ContractiveConfig
    # The contraction holds for any two starting points (delta_0 = 1 without initial noise).
    sequential_requests = True
    projects_initially = True

    @classmethod
    def check_config(cls, config) -> None:
        cc = require_section(config, "contractive_coefficients", cls.name)
        require_plain_sgd(config, cls.name)
        key = "unlearning.contractive_coefficients"
        after, before = cc.noise_addition_after_projection, cc.noise_addition_before_projection
        if after and before:
            raise ConfigError(f"{key}.noise_addition_before_projection and noise_addition_after_projection are both "
                              "true: noise would be added twice but accounted once "
                              "(docs/differences.md#model-clipping-noise); choose one")
        if not (after or before):
            raise ConfigError(f"{key}.noise_addition_after_projection / noise_addition_before_projection: one must "
                              "be true (where the noise of each step is added)")
        if cc.grad_clip is not False and after:
            raise ConfigError(f"{key}.grad_clip: {cc.grad_clip} is only analysed with noise_addition_before_projection:"
                              " true; set grad_clip: false or move the noise before the projection")
        if cc.grad_clip is False and before:
            raise ConfigError(f"{key}.noise_addition_before_projection: true needs {key}.grad_clip (the step's "
                              "movement must be bounded); set grad_clip or add the noise after the projection")

    @classmethod
    def certificate_keys(cls, config) -> dict:
        cc = config.unlearning.contractive_coefficients
        key = "unlearning.contractive_coefficients"
        return {**super().certificate_keys(config), f"{key}.sigma": cc.sigma, f"{key}.model_clip": cc.model_clip,
                f"{key}.grad_clip": cc.grad_clip, f"{key}.epsilon_target": cc.epsilon_target}

    def check_plan(self, plan: PrivacyPlan) -> None:
        if self._trajectory.stop_step is None:
            cc = self.config.unlearning.contractive_coefficients
            raise ConfigError(
                f"unlearning.contractive_coefficients.sigma: with sigma {cc.sigma} and model_clip {cc.model_clip} the "
                f"contraction accountant does not reach delta {self.config.unlearning.delta:g} within the budget of "
                f"{self.context.budget_steps} steps (delta is still {self._trajectory.deltas[-1]:.3g}); raise sigma "
                "or unlearning.epochs, or lower model_clip")

    # -- the certificate ------------------------------------------------------------------
    @cached_property
    def _schedule(self):
        return make_schedule(self.config.unlearning, self.context.budget_steps)

    def _radius(self, step: int) -> float:
        cc = self.config.unlearning.contractive_coefficients
        return step_radius(cc.model_clip, cc.sigma, eta=self._schedule(step), grad_clip=cc.grad_clip or None,
                           noise_before_projection=cc.noise_addition_before_projection,
                           start_radius=self._start_radius if step == 0 else None,
                           num_parameters=self.context.num_parameters)

    @cached_property
    def _start_radius(self) -> float:
        """Where the first noisy step starts: the initial set (C0-ball or clamp box), or
        anywhere once initial noise is added (then the first step contracts nothing)."""
        u = self.config.unlearning
        if u.init_sigma:
            return math.inf
        return init_ball_radius(u.init_model_clip, u.init_model_clip_type, self.context.num_parameters)

    @cached_property
    def _delta0(self) -> float:
        u = self.config.unlearning
        if not u.init_sigma:
            return 1.0  # no initial noise: no initial guarantee
        radius = init_ball_radius(u.init_model_clip, u.init_model_clip_type, self.context.num_parameters)
        return initial_delta(u.contractive_coefficients.epsilon_target, radius, u.init_sigma)

    @cached_property
    def _trajectory(self):
        u = self.config.unlearning
        radii = (self._radius(t) for t in range(self.context.budget_steps))
        return delta_trajectory(u.contractive_coefficients.epsilon_target, self._delta0, radii, u.delta)

    @cached_property
    def _plan(self) -> PrivacyPlan:
        u = self.config.unlearning
        cc = u.contractive_coefficients
        trajectory = self._trajectory
        steps = trajectory.stop_step or len(trajectory.deltas)
        reasons = []
        certified_epsilon, certified_delta = cc.epsilon_target, trajectory.deltas[steps - 1] if steps else self._delta0
        if self.config.compat.reuse_noise:
            reasons.append("compat.reuse_noise: one noise vector is added at every noisy step "
                           "(docs/differences.md#fresh-noise); the contraction "
                           "argument needs independent noise, so no certificate follows")
            certified_epsilon = certified_delta = None
        remarks = []
        if certified_delta is not None and certified_delta <= DELTA_FLOOR:
            remarks.append(f"delta is below {DELTA_FLOOR:g}, the smallest the accountant states (float64 cannot hold "
                           f"the bound); {DELTA_FLOOR:g} is certified, never 0 (which would claim pure DP)")
        return PrivacyPlan(
            noisy_steps=steps, sigma_t=[cc.sigma] * steps, init_sigma=u.init_sigma,
            certified_epsilon=certified_epsilon, certified_delta=certified_delta, epsilon_published=cc.epsilon_target,
            certificate_valid=not reasons, invalid_reasons=reasons, remarks=remarks,
            details={"stop_unlearn": trajectory.stop_step, "delta_0": self._delta0,
                     "gamma": trajectory.gammas[:steps], "last_step_radius": self._last_step_radius(steps)})

    def plan(self) -> PrivacyPlan:
        return self._plan

    def output_noise_std(self) -> float | None:
        """One noisy step with the noise after the projection and no initial noise: the
        output is the projected step plus N(0, sigma^2 I), affine in the noise. Earlier
        noise is projected with the model (not affine): None for more steps."""
        u, cc = self.config.unlearning, self.config.unlearning.contractive_coefficients
        single = self._plan.noisy_steps == 1 and not u.init_sigma
        if single and cc.noise_addition_after_projection and not cc.noise_addition_before_projection:
            return cc.sigma
        return None

    def _last_step_radius(self, steps: int) -> float | None:
        """distance / sigma of the last noisy step's two possible pre-noise points, whatever
        the model before it: both lie in the ball of radius R when the noise comes after the
        projection; with the noise before it, only from step 2 on (step 1 starts in the
        C0-ball). None when no such bound is known."""
        cc = self.config.unlearning.contractive_coefficients
        if steps == 0 or (cc.noise_addition_before_projection and steps == 1):
            return None
        return self._radius(steps - 1)

    @classmethod
    def compose_certificates(cls, plans, delta) -> ComposedCertificate:
        """Two valid rules, the smaller epsilon at `delta` kept: basic composition of the
        accountant's (epsilon, delta), and each request's last noisy step alone, a Gaussian
        mechanism with mu = its radius whatever came before (fine-tuning is post-processing),
        composed over the requests as Gaussian mechanisms (docs/requests.md)."""
        basic = super().compose_certificates(plans, delta)
        radii = [p.details.get("last_step_radius") for p in plans]
        if basic.epsilon is None or any(r is None for r in radii):
            return basic
        epsilon, mu = gaussian_composition(radii, delta)
        if basic.delta <= delta and basic.epsilon <= epsilon:
            return basic
        return ComposedCertificate(epsilon, float(delta), f"Gaussian composition of each request's last noisy step "
                                   f"(mu = {mu:.4g})", basic.valid)

    def certificate_row(self) -> dict:
        plan = self._plan
        delta = plan.certified_delta if plan.certified_delta is not None else self._trajectory.deltas[-1]
        return {"stop_unlearn": plan.noisy_steps, **certificate_row(plan, epsilon=plan.epsilon_published, delta=delta)}

    # -- the run --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        initial_projection_(model.theta, self.config, self.context, log)
        log({"delta": self._delta0, "state_step": 0})
        self.finished = False

    def noisy_step(self, model, x, y, step: int) -> StepResult:
        u = self.config.unlearning
        cc = u.contractive_coefficients
        loss, correct, grad = batch_loss_and_grad(model, x, y)
        eta = self._schedule(step)
        with torch.no_grad():
            theta = model.theta
            update = grad.add(theta, alpha=u.weight_decay) if u.weight_decay else grad
            if cc.grad_clip is not False:
                update = clip_l2(update, cc.grad_clip)  # gradient and decay clipped together (D33)
            theta.sub_(eta * update)
            if cc.noise_addition_before_projection:
                self.context.noise.add_(theta, cc.sigma)
            project_l2_(theta, cc.model_clip)
            if cc.noise_addition_after_projection:
                self.context.noise.add_(theta, cc.sigma)
        return StepResult(loss, correct, y.shape[-1], cc.sigma, eta)

    def after_step(self, step: int, sigma: float, eta: float, log) -> bool:
        trajectory = self._trajectory
        log({"gamma": trajectory.gammas[step - 1], "state_step": step, "delta": trajectory.deltas[step - 1],
             "epsilon": self.config.unlearning.contractive_coefficients.epsilon_target})
        if step >= self._plan.noisy_steps:
            self.finished = True
        return self.finished

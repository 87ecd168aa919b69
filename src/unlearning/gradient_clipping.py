"""Gradient Clipping (config name "iteration"): noisy clipped SGD certified by privacy
amplification by iteration (paper eq. 3; the original code).

    theta_0     = clip(theta_hat, C0)                        (+ optional N(0, sigma0^2))
    theta_{t+1} = theta_t - eta (clip(g_t, C1) + lambda theta_t) + sigma_t xi_t,  t < T

T and sigma_t come from src/privacy/pabi.py; xi_t is fresh every step. The certificate is
computed from the sigmas actually drawn (the PABI program with non-negative shifts, which
the reference's decreasing schedule needs) with the correct Renyi -> DP conversion
(docs/differences.md#renyi-conversion); `epsilon_published` is what the reference would have printed.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from typing import Optional

from pydantic import Field, model_validator

from src.certificates import ComposedCertificate, PrivacyPlan, certificate_row
from src.config import FiniteFloat, Section
from src.errors import ConfigError
from src.noise import clip_l2
from src.privacy.composition import linear_rdp_composition
from src.privacy.float_rounding import gradient_clipping_rounding_shift
from src.privacy.pabi import (init_ball_radius, pabi_certificate, pabi_sigmas, pabi_steps, published_pabi_epsilon,
                              running_renyi_epsilons, scale_sigmas_to_renyi_epsilon)
from src.privacy.rdp import calibrate_renyi_epsilon, linear_rdp_to_dp
from src.unlearning.base import (StepResult, UnlearningAlgorithm, batch_loss_and_grad, require_plain_sgd,
                                 require_positive_init_clip, require_section)
from src.unlearning.initial_projection import initial_projection_


class IterationConfig(Section):
    """`unlearning.iteration:` the keys of Gradient Clipping."""

    # The reference's knob: a Renyi epsilon fed to its sigma formulas (docs/differences.md).
    epsilon_renyi_target: Optional[FiniteFloat] = Field(None, gt=0)
    # Ours: a DP epsilon at unlearning.delta; eps_R is calibrated to reach it exactly.
    epsilon_target: Optional[FiniteFloat] = Field(None, gt=0)
    grad_clip: FiniteFloat = Field(gt=0)
    calc_intermediate_eps_renyi: bool = False

    @model_validator(mode="after")
    def _exactly_one_target(self):
        given = [k for k in ("epsilon_renyi_target", "epsilon_target") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of epsilon_renyi_target (the reference's Renyi target) and "
                f"epsilon_target (a certified DP epsilon) must be given; got {given or 'neither'}"
            )
        return self


class GradientClipping(UnlearningAlgorithm):
    name = "iteration"
    vectorised = True  # runs on theta [N, d] (seeds: N)
    section = IterationConfig
    sequential_requests = True  # PABI holds for any two starting points in the C0-ball
    projects_initially = True

    @classmethod
    def check_config(cls, config) -> None:
        require_section(config, "iteration", cls.name)
        require_plain_sgd(config, cls.name)
        u = config.unlearning
        if u.lr_schedule != "constant":
            raise ConfigError(f"unlearning.lr_schedule: '{u.lr_schedule}' is not allowed for Gradient Clipping: the "
                              "PABI noise formulas assume a constant learning rate; use constant")
        require_positive_init_clip(config, "Gradient Clipping")
        if u.max_lr * u.weight_decay >= 1:
            raise ConfigError(f"unlearning.weight_decay: eta * lambda = {u.max_lr} * {u.weight_decay} = "
                              f"{u.max_lr * u.weight_decay:g} must be < 1 for the weight-decayed step to contract "
                              "(rho = 1 - eta*lambda in (0, 1])")

    @classmethod
    def certificate_keys(cls, config) -> dict:
        it = config.unlearning.iteration
        target = ("unlearning.iteration.epsilon_target", it.epsilon_target) if it.epsilon_target is not None else \
            ("unlearning.iteration.epsilon_renyi_target", it.epsilon_renyi_target)
        return {**super().certificate_keys(config), "unlearning.iteration.grad_clip": it.grad_clip, target[0]: target[1]}

    def _check_budget(self, steps: int) -> None:
        """Before any sigma is computed: T can be astronomically large (C0 / (C1 eta))."""
        budget = self.context.budget_steps
        if steps > budget:
            raise ConfigError(
                f"unlearning.epochs: Gradient Clipping needs T = {steps} noisy steps, but the budget is "
                f"{self.config.unlearning.epochs} epochs x {self.context.steps_per_epoch} steps = {budget}; raise "
                "unlearning.epochs, or T = ceil(C0 / (C1 eta)) falls with a larger grad_clip or max_lr")

    # -- the certificate, before any data ------------------------------------------------
    @cached_property
    def _radius(self) -> float:
        u = self.config.unlearning
        return init_ball_radius(u.init_model_clip, u.init_model_clip_type, self.context.num_parameters)

    @cached_property
    def _steps(self):
        u = self.config.unlearning
        return pabi_steps(self._radius, u.iteration.grad_clip, u.max_lr, u.weight_decay)

    @cached_property
    def _epsilon_renyi(self) -> float:
        u = self.config.unlearning
        if u.iteration.epsilon_target is not None:
            return calibrate_renyi_epsilon(u.iteration.epsilon_target, u.delta)
        return u.iteration.epsilon_renyi_target

    @cached_property
    def sigmas(self):
        u = self.config.unlearning
        args = (2 * self._radius, u.iteration.grad_clip, u.max_lr, u.weight_decay)
        if u.iteration.epsilon_target is None:
            # The reference's knob: its formulas (certified for what they really give).
            return pabi_sigmas(self._steps.T, *args, self._epsilon_renyi, schedule=u.noise_schedule,
                               lambda0=self.config.compat.pabi_lambda0)
        # A certified epsilon_target: the schedule's shape, scaled so that its valid bound
        # (pabi_renyi_epsilon) is exactly the calibrated eps_R, whatever the schedule.
        shape = pabi_sigmas(self._steps.T, *args, self._epsilon_renyi, schedule=u.noise_schedule)
        exact = scale_sigmas_to_renyi_epsilon(shape, *args, self._epsilon_renyi)
        # The float32 rounding's shift grows with the noise (the bound is increasing in the
        # sigmas): take it for 1% more noise than the exact-arithmetic sigmas, check the room held.
        # A second pass with the shift of the first pass's (larger) sigmas: the final sigmas are
        # no larger, so their own shift is no larger than the one they were scaled for.
        shift, _ = self._rounding_for(exact * 1.01)
        first = scale_sigmas_to_renyi_epsilon(exact, *args, self._epsilon_renyi, rounding_shift=shift)
        if np.any(first > exact * 1.01):
            raise ValueError("the float32 rounding margin needs more than 1% more noise; no bound follows")
        shift, _ = self._rounding_for(first)
        return scale_sigmas_to_renyi_epsilon(exact, *args, self._epsilon_renyi, rounding_shift=shift)

    # With this probability (part of delta) some iterate leaves the ball the rounding bound
    # assumes; the certificate converts at delta minus it.
    _ROUNDING_TAIL = 1e-12

    def _rounding_for(self, sigmas) -> tuple[float, float]:
        u = self.config.unlearning
        if u.init_sigma:  # the initial noise joins the accumulated noise (one more, conservative, step)
            sigmas = np.concatenate(([float(u.init_sigma)], sigmas))
        return gradient_clipping_rounding_shift(self._radius, sigmas, u.max_lr, u.iteration.grad_clip, u.weight_decay,
                                                self.context.num_parameters, self._ROUNDING_TAIL * u.delta)

    @cached_property
    def _rounding(self) -> tuple[float, float]:
        """(extra PABI shift per step, iterate bound) for the sigmas drawn
        (src/privacy/float_rounding.py, docs/differences.md#float-tail)."""
        return self._rounding_for(self.sigmas)

    @cached_property
    def _plan(self) -> PrivacyPlan:
        u, compat = self.config.unlearning, self.config.compat
        self._check_budget(self._steps.T)
        certificate = pabi_certificate(self.sigmas, 2 * self._radius, u.iteration.grad_clip, u.max_lr,
                                       u.weight_decay, u.delta * (1 - self._ROUNDING_TAIL), conversion="correct",
                                       rounding_shift=self._rounding[0])
        published = published_pabi_epsilon(self._epsilon_renyi, u.delta)
        reasons = []
        certified_epsilon, certified_delta = certificate.epsilon, u.delta
        if compat.reuse_noise:
            reasons.append("compat.reuse_noise: one noise vector is added at every noisy step "
                           "(docs/differences.md#fresh-noise); PABI needs "
                           "independent noise, so no certificate follows")
            certified_epsilon = certified_delta = None
        if compat.renyi_conversion == "upstream":
            reasons.append(f"compat.renyi_conversion: upstream: the logged epsilon {published:.4g} drops the Renyi "
                           f"order (docs/differences.md#renyi-conversion); the noise drawn certifies epsilon "
                           f"{certificate.epsilon:.4g}")
        return PrivacyPlan(
            noisy_steps=self._steps.T, sigma_t=[float(s) for s in self.sigmas], init_sigma=u.init_sigma,
            certified_epsilon=certified_epsilon, certified_delta=certified_delta, epsilon_published=published,
            certificate_valid=not reasons, invalid_reasons=reasons, remarks=self._remarks(published, certificate),
            details={"pabi_steps": self._steps.T, "pabi_steps_base": self._steps.T_base,
                     "reg_saved_pabi_steps": self._steps.regularised, "epsilon_renyi": self._epsilon_renyi,
                     "epsilon_renyi_of_sigmas": certificate.epsilon_renyi, "renyi_order": certificate.alpha,
                     "init_radius": self._radius, "float32_rounding_shift": self._rounding[0],
                     "float32_iterate_bound": self._rounding[1]})

    def _remarks(self, published: float, certificate) -> list[str]:
        """How the original code would have labelled this run, in words (it drops the Renyi
        order when converting, so its label is eps_R plus a small constant)."""
        u = self.config.unlearning
        where = "see docs/differences.md#renyi-conversion"
        if u.iteration.epsilon_target is not None:
            labelled_one = linear_rdp_to_dp(1.0, u.delta)
            return [f"the original code labels a run with its Renyi target plus a constant: for this noise it would "
                    f"print epsilon {published:.2g}; its runs labelled epsilon 1 carry less noise and are certified "
                    f"only at epsilon {labelled_one:.3g} ({where})"]
        return [f"the original code would label this run epsilon {published:.4g} (its Renyi target plus a constant); "
                f"the noise drawn certifies epsilon {certificate.epsilon:.4g} ({where})"]

    def plan(self) -> PrivacyPlan:
        return self._plan

    def output_noise_std(self) -> float:
        """theta_T = rho^T theta_0 - (clipped gradients) + sum_t rho^(T-1-t) sigma_t xi_t
        with rho = 1 - eta lambda, plus sigma0 rho^T from the initial noise."""
        u = self.config.unlearning
        rho, steps = 1 - u.max_lr * u.weight_decay, self._plan.noisy_steps
        variance = u.init_sigma ** 2 * rho ** (2 * steps)
        variance += sum(float(s) ** 2 * rho ** (2 * (steps - 1 - t)) for t, s in enumerate(self.sigmas[:steps]))
        return variance ** 0.5

    def gaussian_equivalent_mu(self) -> float:
        """The PABI bound is linear Renyi DP, D_alpha <= alpha eps_R for every alpha: the
        Renyi curve of the Gaussian mechanism with mu^2 / 2 = eps_R."""
        return (2 * self._plan.details["epsilon_renyi_of_sigmas"]) ** 0.5

    @classmethod
    def compose_certificates(cls, plans, delta) -> ComposedCertificate:
        """Renyi DP adds up over requests: alpha * sum_r eps_R,r, converted once."""
        if any(p.certified_epsilon is None for p in plans):
            return super().compose_certificates(plans, delta)
        # each request's rounding bound may fail with probability 1e-12 delta: taken out of delta
        epsilon, _ = linear_rdp_composition([p.details["epsilon_renyi_of_sigmas"] for p in plans],
                                            delta * (1 - len(plans) * cls._ROUNDING_TAIL))
        return ComposedCertificate(epsilon, float(delta), "Renyi DP composition (alpha * sum of eps_R)",
                                   all(p.certificate_valid for p in plans))

    def certificate_row(self) -> dict:
        plan = self._plan
        epsilon = plan.epsilon_published if self.config.compat.renyi_conversion == "upstream" \
            else plan.certified_epsilon
        if epsilon is None:  # no certificate: log what the reference would have printed
            epsilon = plan.epsilon_published
        return {"stop_unlearn": plan.noisy_steps,
                **certificate_row(plan, epsilon=epsilon, delta=self.config.unlearning.delta)}

    # -- the run --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        initial_projection_(model.theta, self.config, self.context, log)
        if self._steps.regularised:
            log({"reg_saved_pabi_steps": True})
        log({"pabi_steps": self._steps.T})
        self.finished = False

    def noisy_step(self, model, x, y, step: int) -> StepResult:
        u = self.config.unlearning
        loss, correct, grad = batch_loss_and_grad(model, x, y)
        eta, sigma = u.max_lr, float(self.sigmas[step])
        with torch.no_grad():
            theta = model.theta
            update = clip_l2(grad, u.iteration.grad_clip)
            if u.weight_decay:
                update.add_(theta, alpha=u.weight_decay)  # the decay term is not clipped (D33)
            theta.sub_(eta * update)
            self.context.noise.add_(theta, sigma)
        return StepResult(loss, correct, y.shape[-1], sigma, eta)

    def after_step(self, step: int, sigma: float, eta: float, log) -> bool:
        if self.config.unlearning.iteration.calc_intermediate_eps_renyi:
            log({"epsilon_renyi": float(self._running_renyi[step - 1]), "state_step": step})
        if step >= self._steps.T:
            self.finished = True
        return self.finished

    @cached_property
    def _running_renyi(self):
        u = self.config.unlearning
        return running_renyi_epsilons(self.sigmas, u.max_lr, 2 * self._radius, u.iteration.grad_clip, u.weight_decay,
                                      rounding_shift=self._rounding[0])


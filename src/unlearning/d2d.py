"""Descent-to-Delete (config name "d2d"; Neel, Roth, Sharifi-Malvajerdi, ALT 2021), the
baseline of Langevin unlearning, as Chien et al. ran it.

The model was trained to the optimum by noise-free full-batch gradient descent
(`training.algorithm: langevin` with `training.langevin.sigma: 0`). Each request takes I
gradient steps of size unlearning.max_lr on the data without the deleted examples and
then adds Gaussian noise to the model (src/privacy/d2d.py):

* one request (`steps: I`): the published model gets the secret-state noise; the
  certificate needs the trained model within r(I) of the optimum, which is checked
  (strong convexity: ||theta - theta*|| <= ||grad f(theta)|| / m) before anything runs;
* several requests (`requests: [...]`): the sequence without a secret state, I_i from
  the dimension-dependent schedule (`step_factor` f), the noise kept in the state. A
  request of S examples scales the sensitivity, hence the noise, by S.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from src.certificates import PrivacyPlan, certificate_row
from src.config import FiniteFloat
from src.errors import ConfigError, UserError
from src.privacy import d2d
from src.training.langevin import objective_grad
from src.unlearning.base import require_section
from src.unlearning.full_batch import (FullBatchRequests, RequestSchedule, RequestsSection,
                                       accountant_delta, request_sizes)

KEY = "unlearning.d2d"


class D2DConfig(RequestsSection):
    """`unlearning.d2d:` the target of every request and how many steps each takes."""

    epsilon_target: FiniteFloat = Field(gt=0, allow_inf_nan=False)
    # One request: I gradient steps, then the secret-state noise.
    steps: Optional[int] = Field(None, ge=1)
    # Several requests (sizes adding up to the forget set): I_i from the schedule.
    requests: Optional[list[int]] = None
    step_factor: FiniteFloat = Field(1.0, ge=1, allow_inf_nan=False)
    # d of the schedule: the number of parameters by default (the original code used the
    # feature dimension, also for its 10-class model).
    dimension: Optional[int] = Field(None, ge=1)
    delta_rule: Literal["target", "one_over_n"] = "target"

    @model_validator(mode="after")
    def _one_mode(self):
        if (self.steps is None) == (self.requests is None):
            raise ValueError("exactly one of steps (one request with a secret state) and requests (a sequence "
                             "without one) must be given")
        return self


class DescentToDelete(FullBatchRequests):
    name = "d2d"
    section = D2DConfig
    who = "unlearning.algorithm=d2d"
    audited_as_chains = True  # its certificate's worlds are whole chains (src/audit/convex.py)

    @classmethod
    def check_config(cls, config) -> None:
        cls.check_common(config)
        require_section(config, "d2d", cls.name)
        if config.training.langevin.sigma != 0:
            raise ConfigError(f"training.langevin.sigma: {config.training.langevin.sigma} must be 0 for {cls.who}: "
                              "D2D starts from the optimum reached by noise-free gradient descent")

    @property
    def eta(self) -> float:
        return self.config.unlearning.max_lr

    @cached_property
    def gamma(self) -> float:
        chain = self.chain()
        try:
            return d2d.contraction(self.eta, chain.L, chain.m)
        except ValueError as e:
            raise ConfigError(f"unlearning.max_lr: {e}") from None

    @cached_property
    def _schedule_and_sigmas(self):
        section = self.config.unlearning.d2d
        chain = self.chain()
        sizes = request_sizes(section, self.context.sizes.forget, KEY)
        delta = self.delta
        eps = section.epsilon_target
        if section.steps is not None:
            sigma = d2d.secret_state_sigma(section.steps, eps, delta, sizes[0], chain.M, chain.m, chain.n, self.gamma)
            return RequestSchedule(sizes, (section.steps,)), [sigma]
        dimension = section.dimension or self.context.num_parameters
        steps, sigmas, n = [], [], chain.n
        for i, size in enumerate(sizes, start=1):
            I = d2d.sequential_steps(i, eps, delta, dimension, self.gamma, section.step_factor)
            # n of the data before this request: removal shrinks it (the code kept n)
            sigmas.append(size * d2d.sequential_sigma(I, eps, delta, chain.M, chain.m, n, self.gamma))
            steps.append(I)
            n -= size
        return RequestSchedule(sizes, tuple(steps)), sigmas

    @property
    def delta(self) -> float:
        return accountant_delta(self.config.unlearning.d2d, self.config, self.context.sizes.train)

    @property
    def schedule(self) -> RequestSchedule:
        return self._schedule_and_sigmas[0]

    def plan(self) -> PrivacyPlan:
        schedule, sigmas = self._schedule_and_sigmas
        section = self.config.unlearning.d2d
        sigma_t = []
        for steps, sigma in zip(schedule.steps, sigmas):
            sigma_t += [0.0] * (steps - 1) + [sigma]
        eps = section.epsilon_target
        return PrivacyPlan(
            noisy_steps=schedule.total_steps, sigma_t=sigma_t, init_sigma=0.0, certified_epsilon=eps,
            certified_delta=self.delta, epsilon_published=eps, certificate_valid=not self.compat_reasons(),
            invalid_reasons=self.compat_reasons(),
            details={"d2d_steps": list(schedule.steps) if len(sigmas) > 1 else schedule.steps[0],
                     "d2d_sigmas": sigmas if len(sigmas) > 1 else sigmas[0], "d2d_gamma": self.gamma,
                     "d2d_secret_state": section.steps is not None, "delta_rule": section.delta_rule,
                     "requests": [{"size": s, "steps": k, "sigma": g} for s, k, g in zip(schedule.sizes,
                                                                                       schedule.steps, sigmas)]})

    def certificate_row(self) -> dict:
        plan = self.plan()
        return {"stop_unlearn": plan.noisy_steps, **certificate_row(plan)}

    def output_noise_std(self) -> float | None:
        """One request with a secret state: the published model is the descent's (noise-free
        training from a point, noise-free steps: a function of the data alone) plus
        N(0, sigma^2 I), the same affine map of the noise from either data set. A sequence
        keeps its noise in the state, where later steps contract it: None."""
        if self.config.unlearning.d2d.steps is None:
            return None
        return self._schedule_and_sigmas[1][0]

    def request_row(self, request: int) -> dict:
        sigma = self._schedule_and_sigmas[1][request]
        return {"request_epsilon": self.config.unlearning.d2d.epsilon_target, "request_delta": self.delta,
                "request_sigma": sigma}

    # -- the run --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        from src.training.langevin import check_chain_record

        check_chain_record(self.context.pretrained_meta, self.chain(), self.who)
        self.check_trained(model, log)
        super().prepare(model, log)

    def check_trained(self, model, log) -> None:
        """The certificate assumes the trained model is within r(I_1) of the optimum of D."""
        chain, data = self.chain(), self.context.data
        schedule = self.schedule
        theta = model.theta.detach().double().requires_grad_(True)
        parts = [(data.train.x.double(), data.train.y)]
        with torch.enable_grad():
            _, _, grad = objective_grad(model, parts, chain.m, theta=theta)
        distance = float(torch.linalg.vector_norm(grad)) / chain.m
        radius = d2d.convergence_radius(schedule.steps[0], schedule.sizes[0], chain.M, chain.m, chain.n, self.gamma)
        log({"d2d_distance_to_optimum_bound": distance, "d2d_required_radius": radius})
        if not distance <= radius:
            raise UserError(f"training.epochs: the trained model is not close enough to the optimum for D2D's "
                            f"certificate: ||grad f(theta)||/m = {distance:.3g} > r = {radius:.3g}; train longer "
                            "(more training.epochs) or take more unlearning steps")

    def step_update(self, theta, grad, request: int, last_of_request: bool) -> float:
        with torch.no_grad():
            theta.sub_(self.eta * grad)
            if not last_of_request:
                return 0.0
            sigma = self._schedule_and_sigmas[1][request]
            self.context.noise.add_(theta, sigma)
        return sigma

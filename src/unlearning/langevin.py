"""Langevin unlearning (config name "langevin"; Chien, Wang, Chen, Li, NeurIPS 2024).

The model was trained by the Langevin chain itself (`training.algorithm: langevin`,
src/training/langevin.py). Unlearning continues the same chain on the data without the
deleted examples, K more full-batch steps

    theta <- theta - eta (grad L_{D_s}(theta) + m theta) + sqrt(2 eta) sigma xi,

with K the smallest number of steps that certifies `epsilon_target` at delta by the LSI
accountant (src/privacy/langevin.py), or a fixed `steps` whose certificate is reported.
Several requests (`requests: [5, 5, ...]`) are served one after the other with the
weak-triangle recursion; each gets its own K_s, certificate and accuracy row.

The certificate compares the result with the same chain run on the data without the
deleted examples from the same initial law for as many steps in all (Langevin
retraining); the learning bound eps0 holds at every number of training steps, so the
chain need not have mixed. Neighbouring is removal: each request's bound uses |D| before
it (the original code replaced examples and kept n).
"""

from __future__ import annotations

import math
import sys
from functools import cached_property
from typing import Literal, Optional

import torch
from pydantic import Field, field_validator

from src.certificates import PrivacyPlan, certificate_row
from src.config import FiniteFloat
from src.errors import ConfigError
from src.privacy.langevin import (MAX_STEPS, Chain, Request, certificate, learning_epsilon, lsi_constant,
                                  sequential_steps, smallest_steps)
from src.seeds import derive_seed
from src.training.langevin import initial_point_, langevin_step_
from src.unlearning.base import require_section
from src.unlearning.full_batch import (FullBatchRequests, RequestSchedule, RequestsSection,
                                       accountant_delta, accuracy, request_sizes)

KEY = "unlearning.langevin"


class LangevinConfig(RequestsSection):
    """`unlearning.langevin:` the certificate's target and how K is searched.

    The chain's constants (step, l2 coefficient, temperature, L, M) are the training's:
    training.max_lr, training.weight_decay and training.langevin."""

    fixed_key = "steps"

    # Exactly one: a DP target (K is searched), or a fixed K (its epsilon is reported).
    epsilon_target: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    steps: Optional[int] = Field(None, ge=0, le=MAX_STEPS)
    # Sizes of successive deletion requests; they must add up to the forget set. Absent:
    # one request of the whole forget set.
    requests: Optional[list[int]] = None
    # "target": unlearning.delta; "one_over_n": delta = 1/n as the original code.
    delta_rule: Literal["target", "one_over_n"] = "target"
    conversion: Literal["mironov", "balle2020"] = "mironov"
    # Renyi orders searched; the original code used (1, 1e4), (2, 1e4) or (2, 1e5).
    alpha_range: tuple[FiniteFloat, FiniteFloat] = (1.0001, 1e5)
    min_steps: int = Field(1, ge=0)  # the original code never stops at K = 0
    step_lattice: int = Field(1, ge=1)  # 10 with min_steps 1 reproduces its K in 1, 11, 21, ...
    # Warn when a request's learning bound is evaluated at an order above this: the weak
    # triangle doubles the order at every earlier request, and long streams degrade.
    max_order: FiniteFloat = Field(1e6, gt=1)
    # Also run the certificate's reference, Langevin retraining on the retain set from a
    # fresh initial draw for as many steps in all, and log its accuracy.
    retrain_reference: bool = False

    @field_validator("alpha_range")
    @classmethod
    def _orders(cls, value):
        lo, hi = value
        if not (1.0 <= lo < hi and math.isfinite(hi)):
            raise ValueError("must be [lo, hi] with 1 <= lo < hi < infinity")
        return value


class LangevinUnlearning(FullBatchRequests):
    name = "langevin"
    section = LangevinConfig
    who = "unlearning.algorithm=langevin"
    audited_as_chains = True  # its certificate's worlds are whole chains (src/audit/convex.py)

    @classmethod
    def check_config(cls, config) -> None:
        cls.check_common(config)
        require_section(config, "langevin", cls.name)
        t, u = config.training, config.unlearning
        if t.langevin.sigma <= 0:
            raise ConfigError(f"training.langevin.sigma: {t.langevin.sigma} must be > 0 for {cls.who}: the "
                              "certificate comes from the noise of the chain")
        if u.max_lr != t.max_lr:
            raise ConfigError(f"unlearning.max_lr: {u.max_lr} differs from training.max_lr {t.max_lr}: {cls.who} "
                              "continues the training chain with the same step eta; set them equal")

    # -- the certificate, before any data ------------------------------------------------
    @property
    def eta(self) -> float:
        return self.config.training.max_lr

    @cached_property
    def accountant_chain(self) -> Chain:
        c = self.chain()
        return Chain(n=c.n, m=c.m, eta=c.eta, M=c.M, sigma=c.sigma)

    @cached_property
    def _requests(self):
        lv = self.config.unlearning.langevin
        sizes = request_sizes(lv, self.context.sizes.forget, KEY)
        chain = self.accountant_chain
        delta = accountant_delta(lv, self.config, chain.n)
        common = dict(alpha_range=lv.alpha_range, conversion=lv.conversion)
        try:
            if len(sizes) > 1:
                return sizes, sequential_steps(sizes, lv.epsilon_target, chain, delta, min_steps=lv.min_steps,
                                               neighbouring="remove", **common)
            if lv.steps is not None:
                choice = certificate(lv.steps, sizes[0], chain, delta, **common)
            else:
                choice = smallest_steps(lv.epsilon_target, sizes[0], chain, delta, min_steps=lv.min_steps,
                                        step_lattice=lv.step_lattice, **common)
        except ValueError as e:
            raise ConfigError(f"{KEY}.epsilon_target: {e}") from None
        return sizes, [Request(sizes[0], choice.steps, choice.epsilon, choice.alpha, choice.epsilon_renyi, chain.n)]

    @property
    def schedule(self) -> RequestSchedule:
        sizes, results = self._requests
        return RequestSchedule(tuple(sizes), tuple(r.steps for r in results))

    @cached_property
    def _plan(self) -> PrivacyPlan:
        lv = self.config.unlearning.langevin
        chain = self.accountant_chain
        sizes, results = self._requests
        delta = accountant_delta(lv, self.config, chain.n)
        learned = learning_epsilon(sizes[0], chain, delta, lv.alpha_range, lv.conversion)
        warnings = []
        for s, r in enumerate(results):
            deepest = 2 ** s * r.alpha
            if deepest > lv.max_order:
                warnings.append(f"request {s + 1} evaluates the learning bound at Renyi order 2^{s} x {r.alpha:.4g} = "
                                f"{deepest:.3g} > {KEY}.max_order {lv.max_order:g}: the weak-triangle chain loosens "
                                "with every request; fewer, larger requests need fewer steps")
        epsilon = max(r.epsilon for r in results)
        steps = [r.steps for r in results]
        details = {
            "langevin_steps": steps[0] if len(steps) == 1 else steps,
            "epsilon_0": learned.epsilon, "epsilon_0_renyi_order": learned.alpha,
            "renyi_order": results[-1].alpha, "epsilon_renyi": results[-1].epsilon_renyi,
            "lsi_constant": lsi_constant(chain.sigma, chain.m), "langevin_eta": chain.eta, "langevin_sigma": chain.sigma,
            "langevin_m": chain.m, "langevin_L": self.chain().L, "langevin_M": chain.M, "langevin_n": chain.n,
            "delta_rule": lv.delta_rule, "conversion": lv.conversion,
            "requests": [{"size": r.size, "steps": r.steps, "epsilon": r.epsilon, "renyi_order": r.alpha,
                          "n_before": r.n_before} for r in results],
        }
        if warnings:
            details["warnings"] = warnings
        total = sum(steps)
        published = lv.epsilon_target if lv.epsilon_target is not None else epsilon
        return PrivacyPlan(noisy_steps=total, sigma_t=[self.chain().noise_std] * total, init_sigma=0.0,
                           certified_epsilon=epsilon, certified_delta=delta, epsilon_published=published,
                           certificate_valid=not self.compat_reasons(), invalid_reasons=self.compat_reasons(),
                           details=details)

    def plan(self) -> PrivacyPlan:
        return self._plan

    def certificate_row(self) -> dict:
        plan = self._plan
        return {"stop_unlearn": plan.noisy_steps, "renyi_order": plan.details["renyi_order"],
                **certificate_row(plan)}

    def request_row(self, request: int) -> dict:
        r = self._requests[1][request]
        return {"request_epsilon": r.epsilon, "request_delta": self._plan.certified_delta,
                "request_renyi_order": r.alpha}

    # -- the run --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        from src.training.langevin import check_chain_record

        check_chain_record(self.context.pretrained_meta, self.chain(), self.who)
        for warning in self._plan.details.get("warnings", []):
            print(f"WARNING: {warning}", file=sys.stderr)
            log({"langevin_warning": warning})
        super().prepare(model, log)

    def step_update(self, theta, grad, request: int, last_of_request: bool) -> float:
        std = self.chain().noise_std
        langevin_step_(theta, grad, self.eta, 0.0, None)  # the gradient step; the noise below
        if std:
            with torch.no_grad():
                self.context.noise.add_(theta, std)  # sigma rounded up to float32: the safe side
        return std

    def after_last_request(self, log) -> None:
        if self.config.unlearning.langevin.retrain_reference:
            log(self._retrain_reference())

    def _retrain_reference(self) -> dict:
        """The law the certificate compares with: the chain from a fresh initial draw on the
        data without the forget set, for the training's plus the unlearning's steps."""
        chain, data, model = self.chain(), self.context.data, self.model
        generator = torch.Generator(device=model.device).manual_seed(
            derive_seed(self.config.global_seed, "langevin-retrain-reference"))
        theta = torch.empty_like(model.theta.detach()).requires_grad_(True)
        initial_point_(theta, chain, generator)
        noise = lambda: torch.randn(theta.shape, generator=generator, device=theta.device)  # noqa: E731
        steps = chain.T + self.schedule.total_steps
        for _ in range(steps):
            _, _, grad = chain.gradient(model, [(data.retain.x, data.retain.y)], theta=theta)
            langevin_step_(theta, grad, chain.eta, chain.noise_std, noise)
        view = _ThetaView(model, theta.detach())
        return {"Test (Langevin Retrain)_accuracy": accuracy(view, data.test),
                "Val (Langevin Retrain)_accuracy": accuracy(view, data.val), "langevin_retrain_steps": steps}


class _ThetaView:
    """The model's forward at another parameter vector."""

    def __init__(self, model, theta):
        self.model, self.theta = model, theta

    def __call__(self, x):
        return self.model(x, theta=self.theta)

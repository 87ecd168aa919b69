"""Noisy mini-batch SGD unlearning (config name "pnsgd"; Chien, Wang, Chen, Li, "Certified
Machine Unlearning via Noisy Stochastic Gradient Descent", NeurIPS 2024).

The model was trained by projected noisy SGD on cyclic mini-batches (`training.algorithm:
pnsgd`, src/training/pnsgd.py). Unlearning continues that chain, with the same partition
of the data into batches, the same step, temperature and projection, on the data without
the deleted examples: their slots drop out of their batches (each batch's mean is over
the examples it still holds). Request s takes K_s whole epochs (K_s J steps), K_s the
smallest that certifies `epsilon_target` by the W-infinity-tracking accountant
(src/privacy/pnsgd.py), or a fixed `epochs` whose certificate is reported.

The certificate compares the result with the same chain run on the data without the
deleted examples, from the same initial law, for as many epochs in all; it needs no
stationarity. What it assumes (strong convexity, eta <= 1/L, the gradient bound, the
projection radius) is refused at validation when it does not hold.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal, Optional

import torch
from pydantic import Field, field_validator, model_validator

from src.certificates import PrivacyPlan, certificate_row
from src.config import FiniteFloat, Section
from src.errors import CheckpointError, ConfigError
from src.noise import project_l2_
from src.privacy import pnsgd as accountant
from src.training.langevin import objective_grad, require_plain_descent
from src.training.pnsgd import MiniBatchConstants, check_training, cyclic_batches, slot_data
from src.unlearning.base import StepResult, require_section
from src.unlearning.full_batch import FullBatchRequests, RequestSchedule, accountant_delta, accuracy, request_sizes

KEY = "unlearning.pnsgd"


class PNSGDConfig(Section):
    """`unlearning.pnsgd:` the certificate's target. The chain's constants (step, l2
    coefficient, temperature, projection radius, batch size) are the training's."""

    # Exactly one: a DP target (K is searched), or a fixed K in epochs (its epsilon reported).
    epsilon_target: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    epochs: Optional[int] = Field(None, ge=1)
    requests: Optional[list[int]] = None
    delta_rule: Literal["target", "one_over_n"] = "target"
    conversion: Literal["mironov", "balle2020"] = "mironov"
    alpha_range: tuple[FiniteFloat, FiniteFloat] = (2.0, 1e5)  # the paper's code: (2, 1e5)
    min_epochs: int = Field(1, ge=1)
    # "loose" certifies the first request as the paper's code (c^(2N) without the
    # shifted-divergence factor); "shifted" is the tighter bound it uses for later ones.
    first_bound: Literal["shifted", "loose"] = "shifted"

    @field_validator("alpha_range")
    @classmethod
    def _orders(cls, value):
        lo, hi = value
        if not (1.0 < lo < hi and math.isfinite(hi)):
            raise ValueError("must be [lo, hi] with 1 < lo < hi < infinity")
        return value

    @field_validator("requests")
    @classmethod
    def _sizes(cls, value):
        if value is not None and (not value or any(s < 1 for s in value)):
            raise ValueError("must be a non-empty list of request sizes >= 1")
        return value

    @model_validator(mode="after")
    def _one_target(self):
        given = [k for k in ("epsilon_target", "epochs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of epsilon_target (K is searched) and epochs (a fixed K, its epsilon "
                             f"reported) must be given; got {given or 'neither'}")
        if self.requests is not None and self.epochs is not None:
            raise ValueError("requests need epsilon_target: each request's K_s is searched")
        return self


class NoisyMiniBatchSGD(FullBatchRequests):
    name = "pnsgd"
    section = PNSGDConfig
    who = "unlearning.algorithm=pnsgd"

    @classmethod
    def check_config(cls, config) -> None:
        t, u = config.training, config.unlearning
        if t.algorithm != "pnsgd" or t.pnsgd is None:
            raise ConfigError(f"training.algorithm: '{t.algorithm}' is not allowed with {cls.who}: the model must be "
                              "trained by the chain it continues (training.algorithm: pnsgd, with training.pnsgd)")
        check_training(config)
        require_section(config, "pnsgd", cls.name)
        require_plain_descent(u, "unlearning", cls.who, "the unlearning steps are plain noisy mini-batch steps")
        for key in ("max_lr", "weight_decay"):
            if getattr(u, key) != getattr(t, key):
                raise ConfigError(f"unlearning.{key}: {getattr(u, key)} differs from training.{key} "
                                  f"{getattr(t, key)}: {cls.who} continues the training chain; set them equal")
        if u.init_model_clip or u.init_sigma:
            raise ConfigError(f"unlearning.init_model_clip / init_sigma: not used by {cls.who} (it starts from the "
                              "trained model itself); leave them 0")
        if config.compat.reuse_noise:
            raise ConfigError(f"compat.reuse_noise: true is not allowed for {cls.who}: the certificate needs fresh "
                              "noise at every step")

    @property
    def eta(self) -> float:
        return self.config.training.max_lr

    def chain(self) -> MiniBatchConstants:
        return self._chain

    @cached_property
    def _chain(self) -> MiniBatchConstants:
        return MiniBatchConstants.from_config(self.config, n=self.context.sizes.train)

    # -- the certificate, before any data ------------------------------------------------
    @cached_property
    def _requests(self):
        section = self.config.unlearning.pnsgd
        sizes = request_sizes(section, self.context.sizes.forget, KEY)
        chain = self.chain().accountant()
        delta = accountant_delta(section, self.config, chain.n)
        common = dict(alpha_range=section.alpha_range, conversion=section.conversion)
        try:
            if section.epochs is not None:
                choice = accountant.certificate(section.epochs, sizes[0], chain, delta, bound=section.first_bound,
                                                **common)
                shift = accountant.wasserstein_shift(sizes[0], chain)
                return sizes, [accountant.EpochRequest(sizes[0], choice.steps, shift, choice.epsilon, choice.alpha,
                                                       choice.epsilon_renyi)]
            return sizes, accountant.sequential_epochs(sizes, section.epsilon_target, chain, delta,
                                                       neighbouring="remove", first_bound=section.first_bound,
                                                       min_epochs=section.min_epochs, **common)
        except ValueError as e:
            raise ConfigError(f"{KEY}.epsilon_target: {e}") from None

    @property
    def schedule(self) -> RequestSchedule:
        sizes, results = self._requests
        J = self.chain().batches
        return RequestSchedule(tuple(sizes), tuple(r.epochs * J for r in results))

    @cached_property
    def _plan(self) -> PrivacyPlan:
        section = self.config.unlearning.pnsgd
        c = self.chain()
        sizes, results = self._requests
        delta = accountant_delta(section, self.config, c.n)
        epsilon = max(r.epsilon for r in results)
        epochs = [r.epochs for r in results]
        total = sum(epochs) * c.batches
        details = {
            "pnsgd_epochs": epochs[0] if len(epochs) == 1 else epochs, "pnsgd_batches_per_epoch": c.batches,
            "pnsgd_smallest_batch": c.smallest_batch, "pnsgd_contraction": 1.0 - c.eta * c.m,
            "wasserstein_shift": results[-1].shift, "renyi_order": results[-1].alpha,
            "epsilon_renyi": results[-1].epsilon_renyi, "pnsgd_eta": c.eta, "pnsgd_sigma": c.sigma, "pnsgd_m": c.m,
            "pnsgd_L": c.L, "pnsgd_M": c.M, "pnsgd_R": c.R, "pnsgd_n": c.n, "delta_rule": section.delta_rule,
            "conversion": section.conversion, "first_bound": section.first_bound,
            "requests": [{"size": r.size, "epochs": r.epochs, "steps": r.epochs * c.batches, "shift": r.shift,
                          "epsilon": r.epsilon, "renyi_order": r.alpha} for r in results],
        }
        published = section.epsilon_target if section.epsilon_target is not None else epsilon
        return PrivacyPlan(noisy_steps=total, sigma_t=[c.noise_std] * total, init_sigma=0.0,
                           certified_epsilon=epsilon, certified_delta=delta, epsilon_published=published,
                           certificate_valid=True, details=details)

    def plan(self) -> PrivacyPlan:
        return self._plan

    def check_plan(self, plan) -> None:
        # The trainer's epochs are passes over the retain set; the chain's are over its J
        # batches: the budget must hold the steps in either count.
        epochs = max(sum(r.epochs for r in self._requests[1]),
                     math.ceil(plan.noisy_steps / max(self.context.steps_per_epoch, 1)))
        if epochs > self.config.unlearning.epochs:
            raise ConfigError(f"unlearning.epochs: {self.who} needs {epochs} epochs of its {self.chain().batches} "
                              f"cyclic batches, but the budget is {self.config.unlearning.epochs}; set "
                              f"unlearning.epochs >= {epochs} (epochs beyond it are noise-free fine-tuning)")

    def certificate_row(self) -> dict:
        plan = self._plan
        return {"stop_unlearn": plan.noisy_steps, "renyi_order": plan.details["renyi_order"], **certificate_row(plan)}

    def request_row(self, request: int) -> dict:
        r = self._requests[1][request]
        return {"request_epsilon": r.epsilon, "request_delta": self._plan.certified_delta,
                "request_renyi_order": r.alpha, "request_epochs": r.epochs, "request_shift": r.shift}

    # -- the run --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        self._check_chain_record(self.context.pretrained_meta)
        c = self.chain()
        data = self.context.data
        if data is None or data.augmentation is not None:
            raise ConfigError(f"dataset.name: {self.who} needs the run's unaugmented splits")
        self._x, self._y = slot_data(data)
        retained = len(data.retain)
        offsets = [0]
        for size in self.schedule.sizes:
            offsets.append(offsets[-1] + size)
        batches = cyclic_batches(c.n, c.batches, c.seed, model.device)
        # The batches while request s is served: slots of the retain set and of the forget
        # examples of later requests (a slot >= retained is forget example slot - retained).
        self._batches = [[idx[(idx < retained) | (idx >= retained + offsets[s + 1])] for idx in batches]
                         for s in range(len(self.schedule.sizes))]
        # FullBatchRequests.prepare: the learned model's accuracy and the rows of request 0.
        self.model, self.log, self.m = model, log, c.m
        self._pending = None
        log({"Test (Learned)_accuracy": accuracy(model, data.test),
             "Val (Learned)_accuracy": accuracy(model, data.val)})
        self._log_requests(0)
        self.finished = self.schedule.total_steps == 0

    def _check_chain_record(self, meta: dict) -> None:
        record = (meta or {}).get("pnsgd")
        where = (meta or {}).get("path", "the pretrained model")
        if not record:
            raise CheckpointError(f"training.pretrained: {where} was not trained by projected noisy SGD (its "
                                  f"checkpoint has no pnsgd record), so {self.who} cannot certify it; train it with "
                                  "training.algorithm: pnsgd")
        for key, value in self.chain().record().items():
            if key == "seed":  # any draw of the chain (and any partition) is covered
                continue
            got = record.get(key)
            same = got == value if not isinstance(value, float) else (
                isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=1e-12, abs_tol=0.0))
            if not same:
                raise CheckpointError(f"training.pretrained: {where} was trained with {key} = {got!r}, but this run's "
                                      f"config describes {key} = {value!r}; {self.who} certifies only the chain it "
                                      "continues")

    def noisy_step(self, model, x, y, step: int) -> StepResult:
        """Step `step` (0-based) of the phase: batch step mod J of the fixed partition, on the
        data of the request being served (the trainer's retain batch is not used)."""
        c = self.chain()
        request = self.schedule.serving(step + 1)
        idx = self._batches[request][step % c.batches]
        if idx.numel():
            loss, correct, grad = objective_grad(model, [(self._x[idx], self._y[idx])], c.m)
        else:  # every example of this batch deleted: the step is the l2 term's alone
            loss, correct = torch.zeros((), device=model.device), torch.zeros((), dtype=torch.long, device=model.device)
            grad = c.m * model.theta.detach()
        with torch.no_grad():
            model.theta.sub_(c.eta * grad)
            self.context.noise.add_(model.theta, c.noise_std)  # sigma rounded up to float32: the safe side
            project_l2_(model.theta, c.R)
        return StepResult(loss, correct, int(idx.shape[0]), c.noise_std, c.eta)

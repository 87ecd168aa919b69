"""What the two convex methods share (Langevin unlearning and its D2D baseline):
full-batch steps, deletion requests served one after the other, and their rows.

The forget set is deleted in requests of the sizes the method's section lists (one
request of the whole forget set by default), in the forget split's order. While request s
is served, the data are the retain set plus the forget examples of the later requests:
D_s = D minus the examples of requests 1..s. Each noisy step is one full-batch gradient
step on D_s, so one step is one pass over the data and the trainer's epochs are steps.

After the last step of each request the method logs the request's certificate and the
model's accuracy at that moment (`Test (Request)_accuracy`), before any fine-tuning.
The trainer then ends the noisy phase after the last request, as for every method.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from pydantic import field_validator, model_validator

from src.config import Section
from src.errors import ConfigError
from src.training.langevin import (ChainConstants, require_convex_setting, require_full_batch,
                                  require_plain_descent)
from src.unlearning.base import StepResult, UnlearningAlgorithm

EVAL_CHUNK = 8192


@dataclass(frozen=True)
class RequestSchedule:
    sizes: tuple[int, ...]  # examples deleted by each request
    steps: tuple[int, ...]  # full-batch steps spent on each request

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    @property
    def ends(self) -> list[int]:
        """The noisy step (1-based, 0 = before any step) after which each request is served."""
        return list(itertools.accumulate(self.steps))

    def serving(self, step: int) -> int:
        """The request (0-based) that noisy step `step` (1-based) belongs to."""
        return next(s for s, end in enumerate(self.ends) if end >= step)

    def served_after(self, step: int) -> list[int]:
        return [s for s, end in enumerate(self.ends) if end == step]


class RequestsSection(Section):
    """Base of the convex methods' sections: the check of `requests` (each subclass declares
    the field) and, where `fixed_key` names the fixed-K key, that exactly one of
    epsilon_target (K is searched) and that key (a fixed K, its epsilon reported) is given."""

    fixed_key: ClassVar[Optional[str]] = None

    @field_validator("requests", check_fields=False)
    @classmethod
    def _sizes(cls, value):
        if value is not None and (not value or any(s < 1 for s in value)):
            raise ValueError("must be a non-empty list of request sizes >= 1")
        return value

    @model_validator(mode="after")
    def _one_target(self):
        if self.fixed_key is None:
            return self
        given = [k for k in ("epsilon_target", self.fixed_key) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of epsilon_target (K is searched) and {self.fixed_key} (a fixed K, its "
                             f"epsilon reported) must be given; got {given or 'neither'}")
        if self.requests is not None and getattr(self, self.fixed_key) is not None:
            raise ValueError("requests need epsilon_target: each request's K_s is searched")
        return self


def request_sizes(section, forget_size: int, key: str) -> tuple[int, ...]:
    """The section's `requests`, or one request of the whole forget set; they must delete
    exactly the forget set (the run's forget metrics refer to it)."""
    if section.requests is None:
        return (forget_size,)
    sizes = tuple(int(s) for s in section.requests)
    if sum(sizes) != forget_size:
        raise ConfigError(f"{key}.requests: {list(sizes)} delete {sum(sizes)} examples, but the forget set has "
                          f"{forget_size} (dataset.forget_split); the requests must delete exactly the forget set")
    return sizes


@torch.no_grad()
def accuracy(model, split) -> float:
    correct = 0
    for start in range(0, len(split), EVAL_CHUNK):
        logits = model(split.x[start:start + EVAL_CHUNK])
        correct += int((logits.argmax(1) == split.y[start:start + EVAL_CHUNK]).sum())
    return correct / max(len(split), 1)


def accountant_delta(section, config, n: int) -> float:
    """The delta both convex accountants certify: 1/n of the training data (the papers'
    `delta_rule: one_over_n`) or the config's unlearning.delta."""
    return 1.0 / n if section.delta_rule == "one_over_n" else config.unlearning.delta


class FullBatchRequests(UnlearningAlgorithm):
    """Base of the convex methods: subclasses give `schedule`, `chain` and `step_update`."""

    who: str  # how messages name the method
    # The certificate compares chains trained from the method's own initial distribution
    # (the training noise is part of it): two fixed pretrained starts are not its worlds,
    # so the audit's noisy phases from them would test nothing it promises.
    noise_after_pretraining = False

    # -- validation shared by both -----------------------------------------------------
    @classmethod
    def check_common(cls, config) -> None:
        require_convex_setting(config, cls.who)
        u, t = config.unlearning, config.training
        if t.algorithm != "langevin" or t.langevin is None:
            raise ConfigError(f"training.algorithm: '{t.algorithm}' is not allowed with {cls.who}: the model must be "
                              "trained by full-batch gradient descent on the same objective (training.algorithm: "
                              "langevin, with training.langevin)")
        require_plain_descent(u, "unlearning", cls.who, "the unlearning steps are plain full-batch gradient steps")
        if u.weight_decay != t.weight_decay:
            raise ConfigError(f"unlearning.weight_decay: {u.weight_decay} differs from training.weight_decay "
                              f"{t.weight_decay}: {cls.who} unlearns with the objective it trained on (same l2 "
                              "coefficient m); set them equal")
        cls.check_continues(config)

    @classmethod
    def check_continues(cls, config) -> None:
        """The unlearning continues the trained model itself, with fresh noise at every step."""
        u = config.unlearning
        if u.init_model_clip or u.init_sigma:
            raise ConfigError(f"unlearning.init_model_clip / init_sigma: not used by {cls.who} (it starts from the "
                              "trained model itself); leave them 0")
        if config.compat.reuse_noise:
            raise ConfigError(f"compat.reuse_noise: true is not allowed for {cls.who}: the certificate needs fresh "
                              "noise at every step")

    def compat_reasons(self) -> list[str]:
        """Why the certificate does not hold under a compat switch (empty: it holds)."""
        if self.config.compat.langevin_clipping == "upstream":
            return ["compat.langevin_clipping: upstream clips the l2 term with the per-example gradients, as the "
                    "original code did: the steps are not gradient steps of a strongly convex objective"]
        return []

    def check_plan(self, plan) -> None:
        sizes = self.context.sizes
        require_full_batch(self.config, sizes.train, self.who)
        budget = self.context.budget_steps
        if plan.noisy_steps > budget:
            raise ConfigError(f"unlearning.epochs: {self.who} needs {plan.noisy_steps} full-batch steps (one step is "
                              f"one epoch), but the budget is {self.config.unlearning.epochs}; set unlearning.epochs "
                              f">= {plan.noisy_steps} (epochs beyond it are noise-free fine-tuning)")

    # -- the run -----------------------------------------------------------------------
    @property
    def schedule(self) -> RequestSchedule:
        raise NotImplementedError

    def chain(self) -> ChainConstants:
        return ChainConstants.from_config(self.config, n=self.context.sizes.train)

    def step_update(self, theta: torch.Tensor, grad: torch.Tensor, request: int, last_of_request: bool) -> float:
        """Apply the gradient (and noise) of one step; returns the noise std drawn."""
        raise NotImplementedError

    def request_row(self, request: int) -> dict:
        """The certificate of request `request` (0-based), under the row's keys."""
        raise NotImplementedError

    def pending_forget(self, forget, request: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The forget examples still present while request `request` (0-based) is served:
        those of later requests (D_s is the retain set plus these)."""
        start = sum(self.schedule.sizes[:request + 1])
        return forget.x[start:], forget.y[start:]

    def check_trained(self, model, log) -> None:
        """What the certificate assumes of the trained model itself, refused before any step
        (its chain record aside); the audit calls it on its chains too (src/audit/convex.py)."""

    def prepare(self, model, log) -> None:
        data = self.context.data
        if data is None or data.augmentation is not None:
            raise ConfigError(f"dataset.name: {self.who} needs the run's unaugmented splits")
        self.model = model
        self.log = log
        chain = self.chain()
        self.m = chain.m
        self._gradient = chain.gradient
        self._pending = [self.pending_forget(data.forget, s) for s in range(len(self.schedule.sizes))]
        log({"Test (Learned)_accuracy": accuracy(model, data.test), "Val (Learned)_accuracy": accuracy(model, data.val)})
        self._log_requests(0)
        self.finished = self.schedule.total_steps == 0

    def noisy_step(self, model, x, y, step: int) -> StepResult:
        request = self.schedule.serving(step + 1)
        last = (step + 1) == self.schedule.ends[request]
        loss, correct, grad = self._gradient(model, [(x, y), self._pending[request]])
        sigma = self.step_update(model.theta, grad, request, last)
        count = int(y.shape[0] + self._pending[request][1].shape[0])
        return StepResult(loss, correct, count, sigma, self.eta)

    def after_step(self, step: int, sigma: float, eta: float, log) -> bool:
        self._log_requests(step)
        if step >= self.schedule.total_steps:
            self.finished = True
            self.after_last_request(log)
        return self.finished

    def after_last_request(self, log) -> None:
        """Hook: what a method does once every request is served (comparators)."""

    def _log_requests(self, step: int) -> None:
        data = self.context.data
        for s in self.schedule.served_after(step):
            if not torch.isfinite(self.model.theta).all():
                raise ConfigError(f"unlearning.max_lr: the weights became non-finite at step {step} ({self.who}); "
                                  "lower the step size")
            self.log({"request": s + 1, "request_size": self.schedule.sizes[s],
                      "request_steps": self.schedule.steps[s], **self.request_row(s),
                      "Test (Request)_accuracy": accuracy(self.model, data.test),
                      "Val (Request)_accuracy": accuracy(self.model, data.val), "state_step": step})

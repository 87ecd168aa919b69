"""RUM, the Refined-Unlearning Meta-algorithm (Zhao et al., NeurIPS 2024): refine the forget
set into groups (by memorization, by a memorization proxy or by entanglement) and unlearn
them one after another, each step from the model the previous one produced and with a
method (and hyperparameters) of its own, "nothing" included.

Step k's forget set is group k; its retain set removes every group processed so far and
keeps the groups still to come, exactly as the reference does:

    D_r^(1) = D \\ G_1,  D_r^(2) = D \\ (G_1 u G_2),  ...,  D_r^(K) = D \\ F.

That is a stream of deletion requests whose requests are the groups (docs/requests.md), so
a step is one pass of the request stream (src/request_stream/run.py `request_data`, the
same per-request random streams), and step 1 of a RUM with one group is the single run
bit for bit.

Certified RUM. When every step is a certified method whose certificate holds from whatever
model it starts (`sequential_requests`), the whole forget set is certified, in the request
stream's two readings: the released model is (eps_K, delta_K)-indistinguishable from the
last step run from a model that never saw F (the last step's certificate: its noise hides
the whole starting point), and the models of all steps seen together compose by the
stream's rule. Both are planned, and shown by `--dry-run`, before any data are touched. A
step that is empirical, or "nothing" (which leaves its group in the model), makes the run
uncertified, and the plan says so with the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional

from pydantic import ConfigDict, model_validator

from src.certificates import ComposedCertificate, PrivacyPlan
from src.config import Section, validate_config
from src.data.base_datamodule import SplitSizes
from src.data.forget_groups import GROUPS, LEARNING_EVENTS, PROXIES, WHOLE, group_sizes
from src.errors import ConfigError
from src.tracking import fmt_up
from src.training.algorithm import records_learning_events
from src.unlearning.base import UnlearningAlgorithm

NOTHING = "nothing"
# The true score (dataset.forget.memorization's), RUM's proxies (src/evaluation/proxies.py),
# or the entanglement of each forget example with the retain set (src/evaluation/entanglement.py).
GROUP_BY = ("memorization",) + PROXIES + ("entanglement",)


class RUMStep(Section):
    """One step: `algorithm` (a registered method, or `nothing`) and any `unlearning:` keys of
    its own (epochs, max_lr, optim, the method's section...), which replace the run's."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    algorithm: str


class RUMConfig(Section):
    """`unlearning.rum:`"""

    # The score the groups are cut by (high = more memorized).
    group_by: Literal[GROUP_BY] = "memorization"
    # The groups in the order they are unlearned (the reference: low -> mid -> high), or
    # [all]: one group, the whole forget set.
    order: tuple[Literal["low", "mid", "high", "all"], ...] = ("low", "mid", "high")
    # The reference's control: the same examples dealt at random into groups of the same sizes.
    shuffle: bool = False
    steps: dict[str, RUMStep]

    @model_validator(mode="after")
    def _groups_and_steps(self):
        order = list(self.order)
        if order != [WHOLE] and sorted(order) != sorted(GROUPS):
            raise ValueError(f"order must list low, mid and high once each, or be [all]; got {order}")
        if set(self.steps) != set(order):
            raise ValueError(f"steps must give one step for each group of order {order}; got {sorted(self.steps)}")
        return self


def step_config(config, group: str):
    """The experiment config of one step: the run's, with the step's algorithm and keys in
    `unlearning:` (and no `rum:` section); None for `nothing`."""
    step = config.unlearning.rum.steps[group]
    if step.algorithm == NOTHING:
        return None
    if step.algorithm == RUM.name:
        raise ConfigError(f"unlearning.rum.steps.{group}.algorithm: 'rum' cannot be a step of RUM; name a method")
    data = config.to_dict()
    unlearning = data["unlearning"]
    unlearning.pop(RUM.name, None)
    unlearning["algorithm"] = step.algorithm
    _merge(unlearning, dict(step.model_extra or {}))
    try:
        return validate_config(data, source=f"unlearning.rum.steps.{group}")
    except ConfigError as e:  # name the step's keys where the user wrote them
        detail = str(e).split("\n", 1)[-1].replace("  unlearning.", f"  unlearning.rum.steps.{group}.")
        raise ConfigError(f"unlearning.rum.steps.{group}: the step is not valid:\n{detail}") from None


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@dataclass
class RUMStepPlan:
    index: int  # 1-based
    group: str
    sizes: SplitSizes  # train: present before the step; forget: the group; retain: what remains
    deleted: int  # examples of groups 1..index
    algorithm: str
    plan: object = None  # the runner's Plan of this pass; None for `nothing`
    all_models: Optional[ComposedCertificate] = None  # steps 1..index seen together (certified RUM)

    def as_dict(self) -> dict:
        out = {"step": self.index, "group": self.group, "algorithm": self.algorithm, "size": self.sizes.forget,
               "deleted_so_far": self.deleted, "retain_size": self.sizes.retain}
        if self.plan is not None:
            c = self.plan.config.unlearning
            out.update({"epochs": c.epochs, "max_lr": c.max_lr, "steps_per_epoch": self.plan.steps_per_epoch,
                        "budget_steps": c.epochs * self.plan.steps_per_epoch, **self.plan.privacy.as_dict()})
        if self.all_models is not None:
            out.update(self.all_models.as_dict())
        return out


@dataclass
class RUMPlan:
    """Every step planned, and the certificate of the whole forget set."""

    key = "rum"  # where Plan.as_dict puts it
    config: object
    steps: list[RUMStepPlan]
    privacy: PrivacyPlan
    statement: str
    uncertified_because: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        rum = self.config.unlearning.rum
        return {"group_by": rum.group_by, "order": list(rum.order), "shuffle": rum.shuffle,
                "certified": not self.uncertified_because, "certificate": self.statement,
                "uncertified_because": self.uncertified_because, "steps": [s.as_dict() for s in self.steps]}


def plan_steps(config, sizes: SplitSizes, plan_pass) -> RUMPlan:
    """Every step planned by `plan_pass(config, sizes)` (the runner's) on its sizes, and the
    composed certificate; nothing here reads data."""
    rum = config.unlearning.rum
    n = sizes.forget
    sized = {WHOLE: n} if list(rum.order) == [WHOLE] else group_sizes(n)
    if min(sized.values()) == 0:
        raise ConfigError(f"dataset.forget_split: a forget set of {n} examples leaves a RUM group empty "
                          f"(sizes {sized}); RUM needs at least 3 forget examples")
    steps, deleted = [], 0
    for k, group in enumerate(rum.order, 1):
        size = sized[group]
        present = sizes.train - deleted
        deleted += size
        step_sizes = replace(sizes, train=present, forget=size, retain=present - size)
        pass_config = step_config(config, group)
        plan = None
        if pass_config is not None:
            try:
                plan = plan_pass(pass_config, step_sizes)
            except ConfigError as e:
                raise ConfigError(f"unlearning.rum.steps.{group} (step {k}, retain set of {step_sizes.retain}): "
                                  f"{e}") from None
        steps.append(RUMStepPlan(k, group, step_sizes, deleted, rum.steps[group].algorithm, plan))
    reasons = [why for s in steps for why in [_uncertified(s)] if why]
    if reasons:
        privacy = PrivacyPlan(noisy_steps=0, sigma_t=[], init_sigma=0.0, certified_epsilon=None,
                              certified_delta=None, epsilon_published=None, certificate_valid=False,
                              invalid_reasons=[f"RUM is uncertified: {r}" for r in reasons])
        statement = "UNCERTIFIED: " + "; ".join(reasons)
        return RUMPlan(config, steps, privacy, statement, reasons)
    compose = _composition_rule(steps)
    plans = []
    for s in steps:
        plans.append(s.plan.privacy)
        s.all_models = compose(list(plans), config.unlearning.delta)
    last, every = steps[-1].plan.privacy, steps[-1].all_models
    privacy = PrivacyPlan(
        noisy_steps=sum(s.plan.privacy.noisy_steps for s in steps),
        sigma_t=[sigma for s in steps for sigma in s.plan.privacy.sigma_t], init_sigma=last.init_sigma,
        certified_epsilon=last.certified_epsilon, certified_delta=last.certified_delta, epsilon_published=None,
        certificate_valid=every.valid, details=every.as_dict(),
        remarks=["the released model's certificate is the last step's: its noise hides the whole starting point, "
                 "so it covers every group (docs/requests.md, reading (a))",
                 f"every step's model seen together: {every.rule} (reading (b))"])
    statement = (f"certified for the whole forget set of {n}: released model epsilon {fmt_up(last.certified_epsilon)} "
                 f"delta {fmt_up(last.certified_delta)}; every step's model seen together epsilon "
                 f"{fmt_up(every.epsilon)} delta {fmt_up(every.delta)} ({every.rule}); rounded up")
    return RUMPlan(config, steps, privacy, statement)


def _uncertified(step: RUMStepPlan) -> str | None:
    where = f"step {step.index} ({step.group} group) runs '{step.algorithm}'"
    if step.plan is None:
        return f"{where}, which leaves the group's examples in the model"
    privacy, cls = step.plan.privacy, type(step.plan.algorithm)
    if privacy.certified_epsilon is None or privacy.certified_delta is None:
        return f"{where}, an empirical method with no certificate"
    if not privacy.certificate_valid:
        return f"{where}, whose certificate does not hold ({'; '.join(privacy.invalid_reasons)})"
    if not cls.sequential_requests:
        return (f"{where}, whose certificate is not shown to hold from the model the previous step produced "
                "(docs/requests.md)")
    return None


def _composition_rule(steps):
    """The stream's rule of the steps' method when they share one; otherwise basic
    composition, which holds for any certificates (src/privacy/composition.py)."""
    classes = {type(s.plan.algorithm) for s in steps}
    return next(iter(classes)).compose_certificates if len(classes) == 1 else UnlearningAlgorithm.compose_certificates


class RUM(UnlearningAlgorithm):
    name = "rum"
    section = RUMConfig
    section_default = None

    @classmethod
    def check_config(cls, config) -> None:
        if config.unlearning.rum is None:
            raise ConfigError("unlearning.rum: required when unlearning.algorithm is 'rum' (group_by, order, steps)")
        for group in config.unlearning.rum.order:
            step_config(config, group)
        by = config.unlearning.rum.group_by
        if by in LEARNING_EVENTS and (config.training.pretrained != "auto" or not records_learning_events(config)):
            raise ConfigError(f"unlearning.rum.group_by: '{by}' is a learning-event proxy, recorded while the cached "
                              "pretrained model trains: it needs training.pretrained: auto and plain SGD training "
                              f"(training.method is '{config.training.method}'; DP-SGD, Langevin and pnsgd record "
                              "none, nor does release mode, secure_rng); group by holdout_kl, curvature, "
                              "entanglement or memorization instead")

    def plan(self) -> PrivacyPlan:
        return self.plan_steps().privacy

    def plan_steps(self) -> RUMPlan:
        """The steps' plans (the runner's planner of one pass, handed over in the context, on
        each), computed once."""
        if not hasattr(self, "_steps"):
            if self.context.plan_pass is None:
                raise RuntimeError("RUM is planned by the runner (src/runner.py), which hands it plan_pass")
            self._steps = plan_steps(self.config, self.context.sizes, self.context.plan_pass)
        return self._steps

    def prepare(self, model, log) -> None:
        raise RuntimeError("RUM runs its steps itself (src/request_stream/rum.py); it is never handed to the trainer")


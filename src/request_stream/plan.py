"""Plan and certify every request of a stream before any data are touched.

Request r deletes F_r from D_{r-1} (the training data still present) and leaves
D_r = D_{r-1} minus F_r. Its pass is planned like a single run whose train split is
D_{r-1}, forget split F_r and retain split D_r: the steps per epoch follow the size of
D_r, the budget is `requests.epochs` (default `unlearning.epochs`) epochs over it, and
the certificate is the algorithm's own for that pass. Besides each request's certificate
(an adversary who sees the model deployed after it) the plan carries the composition over
requests 1..r (an adversary who sees every deployed model), by the algorithm's own rule
(docs/requests.md). What `--dry-run` prints is this plan, and the run logs it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from src.certificates import ComposedCertificate
from src.data.base_datamodule import SplitSizes
from src.errors import ConfigError
from src.registry import UNLEARNING_ALGORITHMS
from src.request_stream.schedule import RequestSchedule, make_schedule


@dataclass
class RequestPlan:
    index: int  # 1-based
    sizes: SplitSizes  # train: present before the request; forget: this request; retain: what remains
    deleted: int  # examples deleted by requests 1..index
    plan: object  # the runner's Plan of this pass (its config, algorithm and certificate)
    all_models: ComposedCertificate  # requests 1..index seen together

    @property
    def config(self):
        return self.plan.config

    def as_dict(self) -> dict:
        plan = self.plan
        return {
            "request": self.index,
            "size": self.sizes.forget,
            "deleted_so_far": self.deleted,
            "retain_size": self.sizes.retain,
            "epochs": plan.config.unlearning.epochs,
            "steps_per_epoch": plan.steps_per_epoch,
            "budget_steps": plan.config.unlearning.epochs * plan.steps_per_epoch,
            **plan.privacy.as_dict(),
            **self.all_models.as_dict(),
        }


@dataclass
class StreamPlan:
    schedule: RequestSchedule
    requests: list[RequestPlan]

    def as_dict(self) -> dict:
        last = self.requests[-1].all_models
        return {"schedule": self.schedule.description, "num_requests": len(self.requests),
                "sizes": self.schedule.sizes, "all_models_after_last": last.as_dict(),
                "plans": [r.as_dict() for r in self.requests]}


def request_config(config, epochs: int | None):
    """The config of one request's pass: the stream's, with the per-request budget."""
    if epochs is None or epochs == config.unlearning.epochs:
        return config
    return config.model_copy(update={"unlearning": config.unlearning.model_copy(update={"epochs": epochs})})


def request_sizes(sizes: SplitSizes, schedule: RequestSchedule, r: int) -> SplitSizes:
    before = sum(schedule.sizes[:r - 1])
    present = sizes.train - before
    size = schedule.sizes[r - 1]
    return replace(sizes, train=present, forget=size, retain=present - size)


def check_stream_algorithm(config) -> None:
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    if not cls.sequential_requests:
        able = sorted(name for name, c in UNLEARNING_ALGORITHMS.builtins().items() if c.sequential_requests)
        raise ConfigError(
            f"requests: unlearning.algorithm '{cls.name}' cannot serve a stream of deletion requests: its certificate "
            "is not shown to hold from whatever model the previous request deployed (docs/requests.md); "
            f"streams run with {', '.join(able)}")


def plan_stream(config, sizes: SplitSizes, plan_pass: Callable, forget_labels=None) -> StreamPlan:
    """Every request's pass planned by `plan_pass(config, sizes)` (the runner's), and the
    certificates composed over the requests so far."""
    check_stream_algorithm(config)
    section = config.requests
    schedule = make_schedule(section, sizes.forget, forget_labels)
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    pass_config = request_config(config, section.epochs)
    requests, privacy = [], []
    for r in range(1, len(schedule) + 1):
        r_sizes = request_sizes(sizes, schedule, r)
        try:
            plan = plan_pass(pass_config, r_sizes)
        except ConfigError as e:
            raise ConfigError(f"request {r} of {len(schedule)} (retain set of {r_sizes.retain}): {e}") from None
        privacy.append(plan.privacy)
        composed = cls.compose_certificates(list(privacy), config.unlearning.delta)
        requests.append(RequestPlan(r, r_sizes, sum(schedule.sizes[:r]), plan, composed))
    return StreamPlan(schedule, requests)

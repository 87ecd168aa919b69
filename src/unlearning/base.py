"""The interface every unlearning algorithm implements, and the registry of config names.

The trainer knows only this interface. An algorithm:
  * checks its part of the config (`check_config`), before anything is written;
  * states its certificate before any data is touched (`plan`): noisy steps, sigmas,
    (epsilon, delta); this is what `--dry-run` prints;
  * prepares the model for the noisy phase (`prepare`: initial projection, noise, re-init);
  * takes noisy steps (`noisy_step`) and says after each whether its accountant has
    reached the target (`after_step`);
  * or, for a method that draws its own batches (the empirical baselines: forget batches,
    a teacher, a mask), runs whole epochs itself (`unlearn_epoch`) from `context.data`.
Once it is finished, the trainer fine-tunes without noise for the rest of the budget.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from src.config import ExperimentConfig
from src.data.base_datamodule import DataModule, SplitSizes
from src.errors import ConfigError
from src.privacy.composition import basic_composition
from src.privacy.rounding import float32_at_least, radius_inside

LogFn = Callable[[dict], None]


@dataclass
class AlgorithmContext:
    config: ExperimentConfig
    num_parameters: int
    input_shape: tuple[int, ...]
    sizes: SplitSizes
    steps_per_epoch: int  # retain-set batches per unlearning epoch
    device: torch.device | None = None
    noise: "NoiseSource | None" = None
    # The pretrained checkpoint's record of how it was trained (DP-SGD needs it).
    pretrained_meta: dict = field(default_factory=dict)
    # The run's splits (forget, retain, val, ... and the augmentation), for methods that
    # read more than the retain batches the trainer hands to noisy_step.
    data: "DataModule | None" = None
    # An ensemble's members (src/training/ensemble.py): each member's global seed, for
    # what an algorithm draws from a seed rather than from `noise`. Empty: a single run.
    member_seeds: tuple[int, ...] = ()

    @property
    def budget_steps(self) -> int:
        return self.config.unlearning.epochs * self.steps_per_epoch


@dataclass
class PrivacyPlan:
    """The certificate an algorithm will deliver, known before any data is touched."""

    noisy_steps: int
    sigma_t: list[float]
    init_sigma: float
    certified_epsilon: float | None
    certified_delta: float | None
    epsilon_published: float | None
    certificate_valid: bool
    # Why the certificate does not hold, when it does not (compat switches...).
    invalid_reasons: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    # Plain-words notes printed under the certificate (how the original code would have
    # labelled this run, ...); they never change what is certified.
    remarks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {
            "noisy_steps": self.noisy_steps,
            "sigma_t": self.sigma_t,
            "init_sigma": self.init_sigma,
            "certified_epsilon": self.certified_epsilon,
            "certified_delta": self.certified_delta,
            "epsilon_published": self.epsilon_published,
            "certificate_valid": self.certificate_valid,
        }
        if self.invalid_reasons:
            out["certificate_invalid_because"] = self.invalid_reasons
        if self.remarks:
            out["remarks"] = self.remarks
        out.update(self.details)
        return out


@dataclass(frozen=True)
class ComposedCertificate:
    """The guarantee for an adversary who sees every model deployed by a stream of
    deletion requests so far (docs/requests.md); None when a request has none."""

    epsilon: float | None
    delta: float | None
    rule: str
    valid: bool = True

    def as_dict(self) -> dict:
        return {"all_models_epsilon": self.epsilon, "all_models_delta": self.delta,
                "all_models_composition": self.rule, "all_models_valid": self.valid}


@dataclass
class StepResult:
    loss: torch.Tensor  # 0-d, on the device (no host sync per step)
    correct: torch.Tensor
    count: int
    sigma: float
    eta: float


@dataclass
class EpochResult:
    """What one `unlearn_epoch` did: its mean training loss and accuracy, and its compute in
    gradient evaluations (one per example per loss gradient taken)."""

    loss: float
    accuracy: float
    examples: int


class UnlearningAlgorithm:
    name: ClassVar[str]
    # The method's own keys, `unlearning.<name>:` in a config (a src.config.Section), and
    # the value used when a config leaves that section out (None: absent).
    section: ClassVar[type | None] = None
    section_default: ClassVar[object] = None
    # Whether `unlearning.sam` (a sharpness-aware step) may be set: never for a certified
    # phase, whose analysis assumes one plain gradient per step.
    accepts_sam: ClassVar[bool] = False

    # True when the certificate holds whatever model a run starts from (the preparation
    # maps every model into one set, or discards it), so that in a stream of deletion
    # requests each request may start from the model the previous one deployed
    # (docs/requests.md). A method that has not shown this is refused in a stream.
    sequential_requests: ClassVar[bool] = False
    # Whether the noise the certificate rests on is drawn after pretraining (in `prepare`
    # and the noisy steps), so that noisy phases from two starting points can be audited
    # (src/audit/). DP-SGD's noise is in the pretraining itself.
    noise_after_pretraining: ClassVar[bool] = True
    # Whether `prepare` starts with the initial projection (initial_projection.py), so that
    # the noisy phase starts from the projected model, not the given one (the audit
    # measures along the direction between the projected starts).
    projects_initially: ClassVar[bool] = False

    def __init__(self, context: AlgorithmContext):
        self.context = context
        self.config = context.config
        self.finished = False

    # -- before anything runs ------------------------------------------------------
    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        """Refuse what this algorithm cannot run or certify (ConfigError naming the key)."""

    def check_plan(self, plan: PrivacyPlan) -> None:
        """Refuse a plan that cannot run within the budget (needs data sizes)."""

    @classmethod
    def certificate_keys(cls, config: ExperimentConfig) -> dict:
        """The numeric keys the certificate is computed from, named when it overflows."""
        u = config.unlearning
        return {"unlearning.init_model_clip": u.init_model_clip, "unlearning.init_sigma": u.init_sigma,
                "unlearning.max_lr": u.max_lr, "unlearning.weight_decay": u.weight_decay, "unlearning.delta": u.delta}

    def plan(self) -> PrivacyPlan:
        raise NotImplementedError

    # -- the run -------------------------------------------------------------------
    def prepare(self, model, log: LogFn) -> None:
        """Initialise the model for the noisy phase; set `finished` if there is none."""
        raise NotImplementedError

    def noisy_step(self, model, x: torch.Tensor, y: torch.Tensor, step: int) -> StepResult:
        raise NotImplementedError(f"{self.name} has no noisy phase")

    def after_step(self, step: int, sigma: float, eta: float, log: LogFn) -> bool:
        """The accountant, after noisy step `step` (1-based). True when the target is reached."""
        raise NotImplementedError

    def unlearn_epoch(self, model, epoch: int, log: LogFn) -> EpochResult | None:
        """Epoch `epoch` (1-based) of a method that chooses its own batches and optimizer
        (from `context.data`); it sets `finished` after its last. None, the default: the
        trainer hands retain batches to `noisy_step` instead."""
        return None

    # -- what an audit reads about the noise (src/audit/slack.py) ----------------------
    def output_noise_std(self) -> float | None:
        """Per-coordinate std of the Gaussian noise the noisy phase leaves in its output,
        where the output is the same affine map of the noise from any start (noise then
        only contracted, never projected); None where it is not."""
        return None

    def gaussian_equivalent_mu(self) -> float | None:
        """mu of the Gaussian mechanism whose exact (epsilon, delta) curve the accountant's
        bound stands for before it is converted to one (epsilon, delta); None where the
        accountant works in (epsilon, delta) throughout."""
        return None

    def certificate_row(self) -> dict:
        """The final certificate under the reference's keys plus ours."""
        plan = self.plan()
        return certificate_row(plan)

    @classmethod
    def compose_certificates(cls, plans: list[PrivacyPlan], delta: float) -> ComposedCertificate:
        """The certificate of requests 1..k seen together (`plans`, one per request):
        basic composition of their (epsilon, delta), valid for any certificate; a method
        with a tighter rule overrides this (docs/requests.md)."""
        valid = all(p.certificate_valid for p in plans)
        if any(p.certified_epsilon is None or p.certified_delta is None for p in plans):
            return ComposedCertificate(None, None, "none: a request has no certificate", False)
        epsilon, total_delta = basic_composition([p.certified_epsilon for p in plans],
                                                 [p.certified_delta for p in plans])
        return ComposedCertificate(epsilon, total_delta, "basic composition (sum of epsilons and deltas)", valid)


def certificate_row(plan: PrivacyPlan, epsilon=None, delta=None) -> dict:
    """`epsilon`/`delta` are what the run claims (the reference's keys); `certified_*` is
    what the theory gives for the noise drawn; `epsilon_published` what the reference
    code would have printed."""
    return {
        "epsilon": plan.certified_epsilon if epsilon is None else epsilon,
        "delta": plan.certified_delta if delta is None else delta,
        "certified_epsilon": plan.certified_epsilon,
        "certified_delta": plan.certified_delta,
        "epsilon_published": plan.epsilon_published,
        "certificate_valid": plan.certificate_valid,
    }


# The largest noise scale a float32 noise vector can carry.
FLOAT32_MAX = 3.4028234663852886e38


@contextmanager
def certificate_numbers(keys: dict[str, object]):
    """Turn an overflow in the certificate's math into a ConfigError that names the keys.

    The schema admits only finite numbers, but finite values can still overflow what a
    certificate is made of (2 C0 with C0 = 1e308, e^epsilon with epsilon = 1e308, a sigma
    beyond float32). `keys` maps the dotted keys the certificate depends on to their values;
    the most extreme (farthest from 1 in magnitude) is named first."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # what overflows is checked, not warned about
            yield
    except (OverflowError, ValueError, ZeroDivisionError, FloatingPointError) as e:
        raise ConfigError(_overflow_message(keys, str(e))) from None


def require_finite_certificate(plan: "PrivacyPlan", keys: dict[str, object]) -> None:
    """Every number of the plan finite, and every noise scale drawable in float32."""
    numbers = {"sigma": max(plan.sigma_t, default=0.0), "init_sigma": plan.init_sigma,
               "certified_epsilon": plan.certified_epsilon, "certified_delta": plan.certified_delta}
    for name, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(_overflow_message(keys, f"the certificate's {name} is {value}"))
    if numbers["sigma"] > FLOAT32_MAX or plan.init_sigma > FLOAT32_MAX:
        raise ConfigError(_overflow_message(keys, f"a noise scale of {max(numbers['sigma'], plan.init_sigma):.4g} "
                                                  "exceeds float32, in which the noise is drawn"))


def _overflow_message(keys: dict[str, object], detail: str) -> str:
    def extremity(item):
        value = item[1]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            return 0.0
        return abs(math.log10(abs(value)))

    ordered = sorted(keys.items(), key=extremity, reverse=True)
    (first, value), rest = ordered[0], ordered[1:]
    others = ", ".join(f"{k} = {v!r}" for k, v in rest)
    return (f"{first}: {value!r} gives no finite certificate ({detail}); with {others}. Use values within the "
            "range the accountant can represent (far from 1e308 and 1e-308)")


def certificate_scope(config: ExperimentConfig) -> dict:
    """What a certificate covers, for every algorithm: the released model, and in research
    mode only while the seeds (which replay the noise) and the run's logs (which hold
    metrics of the model before its noise) stay private."""
    if config.secure_rng:
        return {"releasable": True,
                "certificate_scope": "holds for the released model and this run's logs: the noise came from the "
                                     "operating system's entropy and was never written, and no metric of a model "
                                     "before its certificate was logged or printed (secure_rng: true)"}
    return {"releasable": False,
            "certificate_scope": "holds for the released model only while the config's seeds (global_seed, "
                                 "training.dp_sgd.seed), which replay the noise, and this run's logs, which hold "
                                 "metrics of the model before its noise, stay private (research mode; "
                                 "secure_rng: true makes a releasable run)"}


# ---------------------------------------------------------------------------------------
# Operations on the parameter vector shared by the algorithms (global norms, D33).
# theta is [d] in a single run and [N, d] in an ensemble: norms are over the last axis,
# one per member (for [d] the same number as the norm of the whole vector).


def project_l2_(theta: torch.Tensor, radius: float) -> torch.Tensor:
    """theta <- theta * min(1, radius / ||theta||) in place (the reference's clip_params).

    The scale is computed in float64 towards a radius a hair inside `radius`
    (src/privacy/rounding.py): the float32 result's norm is then <= radius, where a
    float32 scale could leave it 1e-7 outside the ball the certificate assumes."""
    wide = theta.double()
    norm = torch.linalg.vector_norm(wide, dim=-1, keepdim=True)
    theta.copy_(wide * torch.clamp(radius_inside(radius) / norm, max=1.0).nan_to_num(1.0))
    return theta


def clip_l2(v: torch.Tensor, bound: float) -> torch.Tensor:
    """v * min(1, bound / ||v||), with norm <= bound after float32 rounding (as project_l2_)."""
    wide = v.double()
    norm = torch.linalg.vector_norm(wide, dim=-1, keepdim=True)
    return (wide * torch.clamp(radius_inside(bound) / norm, max=1.0).nan_to_num(1.0)).to(v.dtype)


class NoiseSource:
    """Gaussian noise for the noisy steps: fresh every draw, from a seeded generator
    (research mode) or the operating system (release mode, src/entropy.py).

    `reuse=True` (compat.reuse_noise) draws one vector and returns it every time, as the
    reference's jitted step did (D1); that voids the certificate. The scale multiplied in
    is the accounted sigma rounded UP to float32 (src/privacy/rounding.py).
    """

    def __init__(self, randomness, dimension: int, device, reuse: bool = False):
        self.randomness = randomness
        self.dimension = dimension
        self.device = device
        self.reuse = reuse
        self._fixed = None

    def add_fresh_(self, theta: torch.Tensor, sigma: float) -> None:
        """theta += sigma xi with an independent draw even under `reuse` (initial noise is
        drawn once anyway)."""
        theta.add_(self._sample(), alpha=float32_at_least(sigma))

    def add_(self, theta: torch.Tensor, sigma: float) -> None:
        """theta += sigma xi, xi the step's draw (the same vector every step under `reuse`)."""
        if self.reuse:
            if self._fixed is None:
                self._fixed = self._sample()
            xi = self._fixed
        else:
            xi = self._sample()
        theta.add_(xi, alpha=float32_at_least(sigma))

    def _sample(self) -> torch.Tensor:
        return self.randomness.normal(self.dimension, self.device)


def batch_loss_and_grad(model, x, y):
    """Mean cross-entropy of the batch and its gradient with respect to theta.

    An ensemble computes them itself, per member ([N] losses, [N, d] gradients), in
    chunks of members (src/training/ensemble.py)."""
    if hasattr(model, "loss_and_grad"):
        return model.loss_and_grad(x, y)
    theta = model.theta
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    (grad,) = torch.autograd.grad(loss, theta)
    correct = (logits.detach().argmax(1) == y).sum()
    return loss.detach(), correct, grad


def require_plain_sgd(config: ExperimentConfig, algorithm: str) -> None:
    """The noisy phase's analysis assumes plain SGD (D21)."""
    u = config.unlearning
    if u.optim != "SGD":
        raise ConfigError(f"unlearning.optim: '{u.optim}' is not allowed for {algorithm}: the noisy phase must be "
                          "plain SGD (the certificate assumes it); use SGD")
    if u.momentum != 0:
        raise ConfigError(f"unlearning.momentum: {u.momentum} is not allowed for {algorithm}: the noisy phase must "
                          "be plain SGD without momentum; set 0")
    if u.nesterov:
        raise ConfigError(f"unlearning.nesterov: true is not allowed for {algorithm}: the noisy phase must be plain "
                          "SGD; set false")


def require_positive_init_clip(config: ExperimentConfig, algorithm: str) -> None:
    """The initial projection's radius C0 sets the certificate's sensitivity (diameter 2 C0)."""
    if config.unlearning.init_model_clip <= 0:
        raise ConfigError(f"unlearning.init_model_clip: 0 is not allowed for {algorithm}: the initial projection "
                          "radius C0 (sensitivity 2 C0) must be > 0")


def require_section(config: ExperimentConfig, key: str, algorithm: str):
    section = getattr(config.unlearning, key.replace("-", "_"))
    if section is None:
        raise ConfigError(f"unlearning.{key}: required when unlearning.algorithm is '{algorithm}'")
    return section


# ---------------------------------------------------------------------------------------
# Registry

REGISTRY: dict[str, type[UnlearningAlgorithm]] = {}


def register(cls: type[UnlearningAlgorithm]) -> type[UnlearningAlgorithm]:
    REGISTRY[cls.name] = cls
    return cls


def registered_algorithms() -> dict[str, type[UnlearningAlgorithm]]:
    import src.unlearning  # noqa: F401  (imports every algorithm module, which registers it)

    return dict(REGISTRY)


def algorithm_class(name: str) -> type[UnlearningAlgorithm]:
    registered_algorithms()
    if name not in REGISTRY:
        raise ConfigError(f"unlearning.algorithm: '{name}' is unknown; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]

"""The interface every unlearning algorithm implements (its registry is src/registry.py,
filled by src/catalogue.py; outside methods are adopted by src/unlearning/outside.py).

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

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch.nn import functional as F

from src.certificates import ComposedCertificate, PrivacyPlan, certificate_row
from src.config import ExperimentConfig
from src.data.base_datamodule import DataModule, SplitSizes
from src.errors import ConfigError
from src.noise import NoiseSource
from src.privacy.composition import basic_composition
from src.training.steps import EpochResult, StepResult  # what a step and an epoch return

LogFn = Callable[[dict], None]


@dataclass
class AlgorithmContext:
    config: ExperimentConfig
    num_parameters: int
    input_shape: tuple[int, ...]
    sizes: SplitSizes
    steps_per_epoch: int  # retain-set batches per unlearning epoch
    device: torch.device | None = None
    noise: NoiseSource | None = None
    # The pretrained checkpoint's record of how it was trained (DP-SGD needs it).
    pretrained_meta: dict = field(default_factory=dict)
    # The run's splits (forget, retain, val, ... and the augmentation), for methods that
    # read more than the retain batches the trainer hands to noisy_step.
    data: "DataModule | None" = None
    # An ensemble's members (src/training/ensemble.py): each member's global seed, for
    # what an algorithm draws from a seed rather than from `noise`. Empty: a single run.
    member_seeds: tuple[int, ...] = ()
    # Each member's pretrained record (member i's checkpoint, as `pretrained_meta` is the
    # single run's), for a method whose certificate rests on every one of them (DP-SGD).
    # Empty: a single run.
    member_metas: tuple[dict, ...] = ()
    # The runner's planner of one pass, plan_pass(config, sizes) -> its Plan: for a
    # meta-algorithm whose steps are other methods' passes (RUM), which plans them with it
    # without importing the runner (a layer above).
    plan_pass: Callable | None = None

    @property
    def budget_steps(self) -> int:
        return self.config.unlearning.epochs * self.steps_per_epoch


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
    # Whether the audit runs the method's whole mechanism in both worlds instead: N chains
    # from its own initial law, trained by its training chain on D then unlearned (world A)
    # or trained and continued on D_r alone (world B), the worlds its certificate compares
    # (src/audit/convex.py). The method then supplies what FullBatchRequests
    # (src/unlearning/full_batch.py) has: `schedule`, `chain`, `step_update`, `pending_forget`,
    # `check_trained`.
    audited_as_chains: ClassVar[bool] = False
    # Whether the method runs on an ensemble's theta [N, d] (src/training/ensemble.py):
    # its prepare and noisy steps use only per-member operations (src/noise.py's norms and
    # projections, the noise source's rows), or, for an empirical method, its own epochs
    # run on the members' stacked batches (src/unlearning/empirical.py). Other methods'
    # members run one after another (`seeds: N`).
    vectorised: ClassVar[bool] = False
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
    def reads_learning_events(cls, config: ExperimentConfig) -> bool:
        """Whether the run reads the learning events recorded beside its cached pretrained
        model (src/evaluation/proxies.py): its pretraining must then record them."""
        return False

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

"""What the empirical unlearning baselines share: no certificate, their own optimizer and
batches, optional SAM, optional gradient masks.

They are the methods the unlearning literature compares against (SalUn, RUM, Sharp MinMax
lineage): heuristics with no (epsilon, delta) guarantee, so their plan says
`certified_epsilon: null`, `certificate_valid: false`, "empirical method". Each runs
`unlearning.epochs` epochs of its own (`unlearn_epoch`), with the optimizer of the
`unlearning:` section (`optim`, `max_lr`, `momentum`, `nesterov`, `weight_decay`,
`lr_schedule`; SGD's decay coupled to the gradient as torch.optim.SGD, Adam decoupled as
AdamW) and, when `unlearning.sam` is set, sharpness-aware gradients. Each data stream (retain
order, forget order, random labels) has its own seeded generator, so two methods that read
the retain set the same way see the same batches.

The same code runs an ensemble's members at once (`seeds: N`, src/training/ensemble.py)
for a method marked `vectorised`: the model is then an EnsembleModel with theta [N, d];
every stream is one generator per member, seeded from the member's own global seed, and its
batches are stacked, x [N, b, ...] and y [N, b]; `cross_entropy` gives one loss per member
[N]; `descend` differentiates their sum (each row of the gradient is one member's) and the
optimizer's momentum and weight decay are elementwise. What a method reduces over a batch
it reduces over the last dimension (`y.shape[-1]` examples, `sum(-1)`), so that a single
run's code is also each member's.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
from torch.nn import functional as F

from src.certificates import PrivacyPlan, certificate_row
from src.data.base_datamodule import Split
from src.data.batches import make_generator, num_batches, shuffled_batches
from src.seeds import derive_seed
from src.training.ensemble import MemberBatches, member_batches
from src.training.ensemble import evaluate as evaluate_members
from src.training.evaluate import Evaluator
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule
from src.training.sam import sam_gradient
from src.unlearning.base import EpochResult, UnlearningAlgorithm

EMPIRICAL = "empirical method"
# Examples of an ensemble's batches augmented at once: the gather stays in cache (measured
# on 2 cores, 32 members' MNIST batches of 128: 0.24-0.30 s an epoch in chunks of 8
# members, 0.42-0.50 s all at once).
GATHER_EXAMPLES = 1024


class Batches:
    """Shuffled batches of one split with the training augmentation, from its own generator."""

    def __init__(self, split: Split, batch_size: int, augmentation, generator: torch.Generator):
        self.split = split
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.generator = generator

    def __len__(self) -> int:
        return num_batches(len(self.split), self.batch_size)

    def take(self, idx):
        x, y = self.split.x[idx], self.split.y[idx]
        if self.augmentation is not None:
            x = self.augmentation(x, self.generator)
        return x, y

    def orders(self) -> list[torch.Tensor]:
        """One permutation cut into batches of indices."""
        return shuffled_batches(len(self.split), self.batch_size, self.generator, self.split.y.device)

    def epoch(self):
        for idx in self.orders():
            yield self.take(idx)

    def cycle(self, cached: bool = False):
        """Endless: a new permutation whenever one is used up (NegGrad+'s forget loader);
        `cached`: one permutation's batches repeated, as the RUM / sharp-unlearn code cycles
        a loader it iterated once (compat.neggrad_plus_forget_order: cached)."""
        if not cached:
            while True:
                yield from self.epoch()
        order = self.orders()
        while True:
            for idx in order:
                yield self.take(idx)

    def forget_cycle(self, compat):
        return self.cycle(cached=compat.neggrad_plus_forget_order == "cached")


class EnsembleBatches(Batches):
    """Batches of one split for every member of an ensemble, each member's from its own
    generator (the one its single run's Batches would have): x [N, b, ...], y [N, b]. The
    split's labels are shared [n] or one row per member [N, n] (random labels). Drawn and
    augmented as the ensemble engine's MemberBatches (one gather for all members)."""

    def __init__(self, split: Split, batch_size: int, augmentation, generators: list[torch.Generator]):
        super().__init__(split, batch_size, augmentation, None)
        self.generators = generators
        # the engine's draw reads shared labels; per-member labels are gathered in take
        self.members = MemberBatches(Split(split.x, split.y if split.y.dim() == 1 else split.y[0]), augmentation)

    def __len__(self) -> int:
        return num_batches(self.split.x.shape[0], self.batch_size)

    def take(self, idx):
        batch, y = self.members.draw(idx, self.generators)
        if self.split.y.dim() == 2:
            y = self.split.y.gather(1, idx)
        n, step = idx.shape[0], max(1, GATHER_EXAMPLES // max(idx.shape[1], 1))
        return torch.cat([batch.inputs(start, min(start + step, n)) for start in range(0, n, step)]), y

    def orders(self) -> list[torch.Tensor]:
        """One permutation per member, cut into [N, b] batches."""
        return member_batches(self.split.x.shape[0], self.batch_size, self.generators, self.split.x.device)


class Tally:
    """Loss and accuracy of the retain batches an epoch stepped on, and its compute. An
    ensemble's losses are [N]: its loss, correct and count are then numpy arrays, one
    value per member, summed in the same order as each member's single run sums them."""

    def __init__(self):
        self.loss = 0.0
        self.correct = 0
        self.count = 0
        self.examples = 0

    def retain(self, loss: torch.Tensor, correct: torch.Tensor, count) -> None:
        if loss.dim():  # an ensemble; `count` examples per member (an int, or [N])
            count = np.asarray(count.cpu() if torch.is_tensor(count) else count, dtype=np.int64)
            self.loss = self.loss + np.where(count > 0, loss.detach().double().cpu().numpy() * count, 0.0)
            self.correct = self.correct + correct.cpu().numpy()
            self.count = self.count + count
            return
        self.loss += float(loss) * int(count)
        self.correct += int(correct)
        self.count += int(count)


class EmpiricalUnlearning(UnlearningAlgorithm):
    accepts_sam = True

    def plan(self) -> PrivacyPlan:
        return PrivacyPlan(noisy_steps=0, sigma_t=[], init_sigma=0.0, certified_epsilon=None, certified_delta=None,
                           epsilon_published=None, certificate_valid=False, invalid_reasons=[EMPIRICAL])

    def certificate_row(self) -> dict:
        return certificate_row(self.plan())

    # -- set-up --------------------------------------------------------------------------
    def prepare(self, model, log) -> None:
        self.model = model
        # theta_o, the trained model: SCRUB's teacher, the masks' reference point.
        self.original = model.theta.detach().clone()
        self.optimizer = None
        self.finished = False

    @property
    def data(self):
        return self.context.data

    @property
    def ensemble(self) -> bool:
        """Whether the model is an ensemble's theta [N, d] (context.member_seeds set)."""
        return bool(self.context.member_seeds)

    def generator(self, purpose: str, device):
        """The seeded generator of one stream; an ensemble's: one per member, from its seed."""
        seeds = self.context.member_seeds or (self.config.global_seed,)
        generators = [make_generator(derive_seed(seed, f"unlearning-{purpose}"), device) for seed in seeds]
        return generators if self.ensemble else generators[0]

    def batches(self, split: Split, generator) -> Batches:
        """Shuffled batches of `split` drawn with `generator` (the generators of the members)."""
        cls = EnsembleBatches if self.ensemble else Batches
        return cls(split, self.config.dataset.batch_size, self.data.augmentation, generator)

    def stream(self, split: Split, purpose: str) -> Batches:
        return self.batches(split, self.generator(purpose, split.y.device))

    def shared(self, x: torch.Tensor, y: torch.Tensor):
        """A batch every member sees (a fixed order): as the members' [N, b] batch."""
        if not self.ensemble:
            return x, y
        n = self.model.members
        return x.expand(n, *x.shape), y.expand(n, *y.shape)

    @cached_property
    def retain_batches(self) -> Batches:
        return self.stream(self.data.retain, "retain-order")

    @cached_property
    def forget_batches(self) -> Batches:
        return self.stream(self.data.forget, "forget-order")

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the learning-rate schedule spans all of them)."""
        return len(self.retain_batches)

    def new_optimizer(self) -> ScheduledOptimizer:
        u = self.config.unlearning
        return ScheduledOptimizer(make_optimizer(self.model.theta, u, u.weight_decay),
                                  make_schedule(u, u.epochs * self.steps_per_epoch()))

    def saliency(self, tally: Tally) -> torch.Tensor:
        """The forget saliency at theta_o (src/unlearning/saliency.py); under
        compat.saliency_mask: sgd_steps, summed while the unlearning optimizer ascends."""
        from src.unlearning.saliency import forget_saliency

        optimizer = None
        if self.config.compat.saliency_mask == "sgd_steps":
            u = self.config.unlearning
            optimizer = ScheduledOptimizer(make_optimizer(self.model.theta, u, u.weight_decay),
                                           make_schedule(u, num_batches(len(self.data.forget),
                                                                        self.config.dataset.batch_size)))
        tally.examples += len(self.data.forget)
        return forget_saliency(self.model, self.data.forget, self.config.dataset.batch_size, optimizer,
                               lambda x, y: self.cross_entropy(*self.shared(x, y))[0])

    def setup(self, tally: Tally) -> None:
        """One-time work before the first epoch (a saliency mask, ...), counted in `tally`."""

    # -- steps ---------------------------------------------------------------------------
    def descend(self, loss_fn, tally: Tally, count: int, optimizer=None, mask=None, sam="default", adv_mask=None):
        """One update on the gradient of `loss_fn()` -> (loss, correct), evaluated at theta;
        `count` examples entered the loss. SAM per `unlearning.sam` unless given; the gradient
        multiplied by `mask` (1 = moves) when one is given; `adv_mask`: SAM's perturbed
        gradient alone multiplied (src/training/sam.py). Returns (loss, correct)."""
        theta = self.model.theta
        sam = self.config.unlearning.sam if sam == "default" else sam
        loss, correct, grad = sam_gradient(loss_fn, theta, sam, adv_mask)
        if mask is not None:
            grad = grad * mask
        optimizer = optimizer or self.optimizer
        theta.grad = grad
        optimizer.step()
        theta.grad = None
        self.after_update(optimizer)
        tally.examples += count * (1 if sam is None else 2)
        return loss, correct

    def after_update(self, optimizer) -> None:
        """Hook after every update (SalUn restores its frozen coordinates here)."""

    def cross_entropy(self, x, y, theta=None):
        """(mean CE, number correct) of the model at theta (default: the live parameters);
        per member for an ensemble ([N], [N])."""
        logits = self.model(x, theta)
        return mean_cross_entropy(logits, y), (logits.detach().argmax(-1) == y).sum(-1)

    # -- the phase -----------------------------------------------------------------------
    def unlearn_epoch(self, model, epoch: int, log) -> EpochResult:
        tally = Tally()
        with torch.enable_grad():
            if self.optimizer is None:
                self.setup(tally)
                self.optimizer = self.new_optimizer()
            self.run_epoch(epoch - 1, tally)
        if epoch >= self.config.unlearning.epochs:
            self.finished = True
        if np.all(tally.count == 0):  # no retain batch this epoch (NegGrad): report the retain set as it is now
            if self.ensemble:
                loss, accuracy = evaluate_members(model, self.data.retain)
            else:
                loss, accuracy = Evaluator(model)(self.data.retain)
            return EpochResult(loss, accuracy, tally.examples)
        return EpochResult(tally.loss / tally.count, tally.correct / tally.count, tally.examples)

    def run_epoch(self, e: int, tally: Tally) -> None:
        """Epoch e (0-based) of the method."""
        raise NotImplementedError


def mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch-mean CE of logits [b, C]; of each member's batch for [N, b, C] -> [N]."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y)
    return example_cross_entropy(logits, y).mean(-1)


def example_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example CE: [b] for logits [b, C], [N, b] for an ensemble's [N, b, C] (labels
    [N, b], or [b] shared by the members)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, reduction="none")
    y = y.expand(logits.shape[:-1])
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)

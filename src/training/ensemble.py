"""N members of one config as one vectorised state: theta of shape [N, d].

Member i is the single run of the same config with global seed `member_seed(seed, i)`
(member 0 keeps the config's own seed). Every member therefore draws its initialisation,
data order, augmentation and noise from its own streams, derived exactly as a single run
derives them, and no two members share a stream. An ensemble of one is the single run:
the same parameters, bit for bit on CPU (tests/test_ensemble.py).

A step is one `torch.func.vmap` over members of the network's `functional_call`. The
algorithms of src/unlearning/ see an EnsembleModel where a single run has a FlatModel:
theta is [N, d], norms are per member (src/noise.py), the noise source returns [N, d]; their
noisy steps are unchanged. The phases mirror src/training/trainer.py (pretrain, noisy
phase, fine-tuning); the audit (src/audit/) stops at the end of the noisy phase.

Speed: members' batches are gathered, augmented and differentiated in chunks of members
(`chunk`); on a CPU a chunk small enough to stay in cache is faster than all at once.

Exactness: vmap turns a layer's matrix products into batched ones, whose BLAS kernels
may sum in another order than the single run's (differences of 1e-9 on gradients). A
chunk of one member therefore runs without vmap, on the single run's kernels: an ensemble
of one, or any ensemble with `chunk=1`, reproduces single runs bit for bit; larger chunks
agree with them to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from src.certificates import certificate_scope
from src.data.base_datamodule import DataModule, Split
from src.data.batches import make_generator, num_batches, shuffled_batches
from src.entropy import randomness
from src.errors import ConfigError
from src.models.buffers import require_no_running_stats
from src.models.model import ModelFactory
from src.noise import NoiseSource, project_l2_
from src.seeds import derive_seed, member_seed
from src.training.flat_model import FlatModel
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule
from src.training.own_epoch import run_own_epoch

EVAL_CHUNK = 2048
# Examples of all members of one chunk gathered at once on a CPU (measured on 2 cores:
# 32 MNIST batches of 128 were faster than 2, 8 or 128).
CPU_CHUNK_EXAMPLES = 4096


def member_seeds(seed: int, n: int) -> tuple[int, ...]:
    return tuple(member_seed(seed, i) for i in range(n))


def initial_theta(config, input_shape, seed: int) -> torch.Tensor:
    """The flat initial parameters a single run with global seed `seed` starts from."""
    module = ModelFactory.create_model(config.model.name, config.model.n_classes, input_shape,
                                       seed=derive_seed(seed, "init"))
    return torch.cat([p.detach().reshape(-1) for _, p in module.named_parameters()])


def default_chunk(device, batch_size: int) -> int:
    if torch.device(device).type == "cuda":
        return 1 << 30  # every member at once
    return max(1, CPU_CHUNK_EXAMPLES // max(batch_size, 1))


@dataclass
class EnsembleBatch:
    """One batch per member, not yet gathered: [N, b] example indices and augmentation
    choices. Gathered chunk by chunk of members, so all N batches never sit in memory."""

    split: Split
    idx: torch.Tensor
    augmentation: object | None = None
    choice: torch.Tensor | None = None
    padded: torch.Tensor | None = None  # the split padded once for the augmentation's gather

    def inputs(self, start: int, stop: int) -> torch.Tensor:
        idx = self.idx[start:stop]
        flat = idx.reshape(-1)
        if self.choice is None:
            x = self.split.x.index_select(0, flat)
        elif self.padded is not None:
            x = self.augmentation.apply_rows(self.padded, flat, self.choice[start:stop].reshape(-1))
        else:
            x = self.augmentation.apply(self.split.x.index_select(0, flat), self.choice[start:stop].reshape(-1))
        return x.view(idx.shape[0], idx.shape[1], *x.shape[1:])


class EnsembleModel:
    """theta [N, d] of one network; the network's forward vmapped over members."""

    def __init__(self, network: FlatModel, thetas: torch.Tensor, chunk: int | None = None):
        # one module's buffers for every member: BatchNorm statistics cannot be vmapped
        require_no_running_stats(network.module, "an ensemble (the audit's chains)")
        if thetas.dim() != 2 or thetas.shape[1] != network.num_parameters:
            raise ValueError(f"thetas must be [N, {network.num_parameters}], got {list(thetas.shape)}")
        self.network = network  # the layout (names, shapes) and the module; its own theta is unused
        self.theta = nn.Parameter(thetas.detach().to(network.device, network.theta.dtype).clone())
        self.chunk = chunk or default_chunk(network.device, 128)
        self._loss = vmap(self._member_loss, in_dims=(0, 0, 0, None))
        self._logits_shared = vmap(self._member_logits, in_dims=(0, None))
        self._logits = vmap(self._member_logits, in_dims=(0, 0))

    @property
    def members(self) -> int:
        return self.theta.shape[0]

    @property
    def num_parameters(self) -> int:
        return self.theta.shape[1]

    @property
    def device(self) -> torch.device:
        return self.theta.device

    def _chunks(self):
        for start in range(0, self.members, self.chunk):
            yield start, min(start + self.chunk, self.members)

    # -- one member, vmapped ---------------------------------------------------------------
    def _member_logits(self, theta, x):
        network = self.network
        return functional_call(network.module, (network.unflatten(theta), network.buffers), (x,))

    def _member_loss(self, theta, x, y, l2: float):
        # The same operations, in the same order, as a single run's step (trainer, steps.py).
        logits = self._member_logits(theta, x)
        loss = F.cross_entropy(logits, y)
        if l2:
            loss = loss + 0.5 * l2 * theta.pow(2).sum()
        return loss, (logits.detach().argmax(1) == y).sum()

    # -- what the algorithms and the steps call ------------------------------------------------
    def loss_and_grad(self, batch: EnsembleBatch, y: torch.Tensor, l2: float = 0.0):
        """Per member: mean cross-entropy of its batch (+ 0.5 l2 ||theta||^2), number
        correct, and the gradient: [N], [N], [N, d]."""
        with torch.enable_grad():
            return self._loss_and_grad(batch, y, l2)

    def _loss_and_grad(self, batch: EnsembleBatch, y: torch.Tensor, l2: float):
        losses, correct, grads = [], [], []
        thetas = self.theta.detach()
        for start, stop in self._chunks():
            if stop - start == 1:  # one member: the single run's own kernels (module docstring)
                theta = thetas[start].requires_grad_(True)
                loss, right = self._member_loss(theta, batch.inputs(start, stop)[0], y[start], l2)
                (grad,) = torch.autograd.grad(loss, theta)
                loss, right, grad = loss[None], right[None], grad[None]
            else:
                theta = thetas[start:stop].requires_grad_(True)
                loss, right = self._loss(theta, batch.inputs(start, stop), y[start:stop], l2)
                (grad,) = torch.autograd.grad(loss.sum(), theta)
            losses.append(loss.detach())
            correct.append(right)
            grads.append(grad)
        return torch.cat(losses), torch.cat(correct), torch.cat(grads)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Logits of members [start, stop) on inputs shared by all of them: [members, n, classes]."""
        theta = self.theta[start:stop]
        if theta.shape[0] == 1:
            return self._member_logits(theta[0], x)[None]
        return self._logits_shared(theta, x)

    @torch.no_grad()
    def logits_per_member(self, xs: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Logits of members [start, stop), each on its own inputs xs[i]."""
        theta = self.theta[start:stop]
        if theta.shape[0] == 1:
            return self._member_logits(theta[0], xs[0])[None]
        return self._logits(theta, xs)

    def norm(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.theta.detach(), dim=-1)

    def __call__(self, xs: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [N, b, classes] of every member on its own inputs xs [N, b, ...], at theta
        [N, d] (default: the live parameters, differentiable): what FlatModel's call is to a
        single run, for the empirical methods (src/unlearning/empirical.py)."""
        return self._logits(self.theta if theta is None else theta, xs)


def member_total(loss: torch.Tensor) -> torch.Tensor:
    """What to differentiate: a single run's loss, or the sum of an ensemble's member losses
    [N]. Members do not share parameters, so row i of the gradient of the sum with respect
    to theta [N, d] is member i's own gradient."""
    return loss if loss.dim() == 0 else loss.sum()


class EnsembleNoise:
    """The noise of each member from its own NoiseSource: row i of theta [N, d] gets
    member i's draw, exactly as member i's single run would add it."""

    def __init__(self, sources: list[NoiseSource]):
        self.sources = sources

    def add_(self, theta: torch.Tensor, sigma: float) -> None:
        for row, source in zip(theta, self.sources):
            source.add_(row, sigma)

    def add_fresh_(self, theta: torch.Tensor, sigma: float) -> None:
        for row, source in zip(theta, self.sources):
            source.add_fresh_(row, sigma)


def attach_ensemble(plan, device, seeds, pretrained_meta: dict | None = None, member_metas=(),
                    data: DataModule | None = None):
    """Give the planned algorithm what an ensemble run has: one noise stream per member, each
    member's pretrained record (`member_metas`, member 0's as `pretrained_meta`), the members'
    seeds (the empirical methods' batch and label streams) and the data."""
    config = plan.config
    context = plan.algorithm.context
    context.device = device
    context.pretrained_meta = pretrained_meta or {}
    context.member_seeds = tuple(seeds)
    context.member_metas = tuple(member_metas)
    context.data = data
    context.noise = EnsembleNoise([
        NoiseSource(randomness(config.secure_rng, derive_seed(seed, "unlearning-noise"), device), plan.num_parameters,
                    device, reuse=config.compat.reuse_noise)
        for seed in seeds])
    return plan.algorithm


# ---------------------------------------------------------------------------------------
# Steps and evaluation


def member_batches(n: int, batch_size: int, generators, device) -> list[torch.Tensor]:
    """Each member's epoch (its own permutation), as [N, b] index tensors per step."""
    per_member = [shuffled_batches(n, batch_size, generator, device) for generator in generators]
    return [torch.stack(step) for step in zip(*per_member)]


class MemberBatches:
    """Batches of one split for every member; the split is padded once for the
    augmentation's gather (GatherAugmentation.apply_rows), when it has one."""

    def __init__(self, split: Split, augmentation):
        self.split, self.augmentation = split, augmentation
        self.padded = augmentation.pad(split.x) if hasattr(augmentation, "apply_rows") else None

    def draw(self, idx: torch.Tensor, generators) -> tuple[EnsembleBatch, torch.Tensor]:
        """Indices [N, b] -> the members' batch; each member's augmentation from its own generator."""
        if self.augmentation is None:
            return EnsembleBatch(self.split, idx), self.split.y[idx]
        choice = torch.stack([self.augmentation.draw(idx.shape[1], generator) for generator in generators])
        return EnsembleBatch(self.split, idx, self.augmentation, choice, self.padded), self.split.y[idx]


class EnsembleStep:
    """A noise-free optimizer update of every member (steps.EagerStep, vectorised)."""

    def __init__(self, model: EnsembleModel, batches: MemberBatches, optimizer: ScheduledOptimizer, l2: float = 0.0):
        self.model, self.batches, self.optimizer, self.l2 = model, batches, optimizer, l2

    def __call__(self, idx: torch.Tensor, generators):
        batch, y = self.batches.draw(idx, generators)
        loss, correct, grad = self.model.loss_and_grad(batch, y, self.l2)
        self.model.theta.grad = grad
        self.optimizer.step()
        self.model.theta.grad = None
        return loss, correct


@torch.no_grad()
def evaluate(model: EnsembleModel, split: Split, augmentation=None, generators=None) -> tuple[np.ndarray, np.ndarray]:
    """Per member: sample-weighted loss and accuracy over the whole split (trainer.Evaluator)."""
    n = len(split)
    loss_sum = torch.zeros(model.members, device=model.device)
    correct = torch.zeros(model.members, dtype=torch.long, device=model.device)
    for start in range(0, n, EVAL_CHUNK):
        x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
        for m0, m1 in model._chunks():
            if augmentation is None:
                logits = model.logits(x, m0, m1)
            else:  # compat.augment_eval: each member's own augmentation stream
                xs = torch.stack([augmentation(x, generator) for generator in generators[m0:m1]])
                logits = model.logits_per_member(xs, m0, m1)
            loss_sum[m0:m1] += summed_cross_entropy(logits, y)
            correct[m0:m1] += (logits.argmax(-1) == y).sum(-1)
    n = max(n, 1)
    return (loss_sum.double() / n).cpu().numpy(), (correct.double() / n).cpu().numpy()


def summed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[members, n, classes] -> [members] sums; one member as the single run's Evaluator sums."""
    if logits.shape[0] == 1:
        return F.cross_entropy(logits[0], y, reduction="sum")[None]
    losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]), reduction="none")
    return losses.view(logits.shape[0], -1).sum(1)


# ---------------------------------------------------------------------------------------
# Phases


def pretrain_ensemble(config, data: DataModule, seeds, device, chunk: int | None = None,
                      history: list | None = None) -> EnsembleModel:
    """Every member pretrained from its own initialisation on the train split (trainer.pretrain)."""
    t = config.training
    if t.dp_sgd is not None:
        raise ConfigError("training.dp_sgd: an ensemble does not pretrain with DP-SGD (per-example gradients of "
                          "every member); pretrain one model with experiment.py, or set training.dp_sgd: null")
    network = FlatModel(ModelFactory.create_model(config.model.name, config.model.n_classes, data.input_shape), device)
    thetas = torch.stack([initial_theta(config, data.input_shape, seed) for seed in seeds])
    model = EnsembleModel(network, thetas, chunk or default_chunk(device, config.dataset.batch_size))
    batch_size = config.dataset.batch_size
    generators = [make_generator(derive_seed(seed, "pretrain-data"), device) for seed in seeds]
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, t, t.weight_decay),
                                   make_schedule(t, max(t.epochs, 1) * num_batches(len(data.train), batch_size)))
    step = EnsembleStep(model, MemberBatches(data.train, data.augmentation), optimizer)
    for epoch in range(1, t.epochs + 1):
        for idx in member_batches(len(data.train), batch_size, generators, device):
            step(idx, generators)
        if history is not None:
            val_loss, val_acc = evaluate(model, data.val)
            history.append({"epoch": epoch, "Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc})
    return model


class EnsembleTrainer:
    """The unlearning phase of trainer.Trainer for N members at once.

    `noisy_output` is theta [N, d] at the end of the noisy phase (before any
    post-unlearning clip): what the certificate speaks about, and what the audit audits.
    """

    def __init__(self, config, data: DataModule, model: EnsembleModel, algorithm, seeds, evaluate_splits: bool = True):
        if len(seeds) != model.members:
            raise ValueError(f"{len(seeds)} seeds for {model.members} members")
        self.config, self.data, self.model, self.algorithm = config, data, model, algorithm
        self.device = model.device
        self.evaluate_splits = evaluate_splits
        self.data_generators = [make_generator(derive_seed(s, "unlearning-data"), self.device) for s in seeds]
        self.eval_augmentation = data.augmentation if config.compat.augment_eval else None
        self.eval_generators = [make_generator(derive_seed(s, "eval-augmentation"), self.device) for s in seeds]
        self.retain_batches = MemberBatches(data.retain, data.augmentation)
        self.history: list[dict] = []
        self.noisy_output = None
        self.certificate = None
        self.noisy_steps = 0
        self.gradient_evaluations = 0  # per member: examples x loss gradients, as trainer.Trainer counts

    def log(self, row: dict) -> None:
        """Algorithms' rows (sigma, gamma, pabi_steps, ...) are the same for every member: kept
        once, as plain numbers, in the history's order (the single run logs them there)."""
        if self.evaluate_splits:
            self.history.append(dict(row))

    def validate(self, split: Split, prefix: str, **keys) -> None:
        if not self.evaluate_splits:
            return
        test = split is self.data.test
        loss, acc = evaluate(self.model, split, None if test else self.eval_augmentation,
                             None if test else self.eval_generators)
        self.history.append({f"{prefix}_loss": loss, f"{prefix}_accuracy": acc, **keys})

    def unlearn(self, stop_after_noisy_phase: bool = False) -> torch.Tensor:
        """Noisy phase, then fine-tuning for the rest of the budget; returns final theta [N, d]."""
        config, data, algorithm = self.config, self.data, self.algorithm
        batch_size = config.dataset.batch_size
        self.steps_per_epoch = num_batches(len(data.retain), batch_size)
        with torch.no_grad():
            algorithm.prepare(self.model, self.log)
        self.validate(data.val, "Val (Post Unlearning Setup)")
        if algorithm.finished:
            self._end_noisy_phase(epoch=0)
            if stop_after_noisy_phase:
                return self.noisy_output
        for epoch in range(1, config.unlearning.epochs + 1):
            if not algorithm.finished and self._own_epoch(epoch):
                if stop_after_noisy_phase and algorithm.finished:
                    return self.noisy_output
                continue
            sum_loss = torch.zeros(self.model.members, device=self.device)
            sum_correct = torch.zeros(self.model.members, dtype=torch.long, device=self.device)
            seen = 0
            for idx in member_batches(len(data.retain), batch_size, self.data_generators, self.device):
                if not algorithm.finished:
                    batch, y = self.retain_batches.draw(idx, self.data_generators)
                    self.noisy_steps += 1
                    result = algorithm.noisy_step(self.model, batch, y, self.noisy_steps - 1)
                    if algorithm.after_step(self.noisy_steps, result.sigma, result.eta, self.log):
                        self._end_noisy_phase(epoch)
                        if stop_after_noisy_phase:
                            return self.noisy_output
                    loss, correct = result.loss, result.correct
                else:
                    loss, correct = self.post_step(idx, self.data_generators)
                sum_loss += loss * idx.shape[1]
                sum_correct += correct
                seen += idx.shape[1]
            self.gradient_evaluations += seen
            self._end_epoch(epoch, (sum_loss.double() / seen).cpu().numpy(),
                            (sum_correct.double() / seen).cpu().numpy())
        return self.model.theta.detach()

    def _own_epoch(self, epoch: int) -> bool:
        """An epoch the algorithm runs itself (an empirical method's unlearn_epoch, on theta
        [N, d]; its loss and accuracy one per member), as trainer.Trainer._own_epoch."""
        return run_own_epoch(self, epoch, lambda v: np.asarray(v, dtype=np.float64))

    def _end_epoch(self, epoch: int, retain_loss: np.ndarray, retain_accuracy: np.ndarray) -> None:
        if self.evaluate_splits:
            self.history.append({"retain_loss": retain_loss, "retain_accuracy": retain_accuracy,
                                 "unlearn_epoch": epoch})
        self.validate(self.data.val, "Val (Unlearn)", unlearn_epoch=epoch)
        self.validate(self.data.forget, "Forget (Unlearn)", unlearn_epoch=epoch)

    def test(self) -> np.ndarray:
        """Test accuracy of every member."""
        loss, acc = evaluate(self.model, self.data.test)
        self.history.append({"Test_loss": loss, "Test_accuracy": acc})
        return acc

    def _end_noisy_phase(self, epoch: int) -> None:
        self.noisy_output = self.model.theta.detach().clone()
        self.certificate = {**self.algorithm.certificate_row(), **certificate_scope(self.config)}
        if self.noisy_steps == 0:
            self.certificate["state_step"] = 0
        self.log(dict(self.certificate))
        for split, prefix in ((self.data.val, "Val"), (self.data.forget, "Forget"), (self.data.retain, "Retain")):
            self.validate(split, f"{prefix} (Post Noise Addition)", unlearn_epoch=epoch)
        post = self.config.post_unlearning
        if post.post_unlearn_clip is not False:
            with torch.no_grad():
                project_l2_(self.model.theta, post.post_unlearn_clip)
        total = self.config.unlearning.epochs * self.steps_per_epoch
        optimizer = ScheduledOptimizer(make_optimizer(self.model.theta, post, weight_decay=0.0),
                                       make_schedule(post, total))
        self.post_step = EnsembleStep(self.model, self.retain_batches, optimizer, l2=post.weight_decay)

"""Projected noisy SGD training (`training.algorithm: pnsgd`, the training algorithm
PNSGDTraining behind src/training/algorithm.py): the chain of noisy mini-batch
SGD unlearning (Chien, Wang, Chen, Li, "Certified Machine Unlearning via Noisy Stochastic
Gradient Descent", NeurIPS 2024).

The n training examples (retain then forget) are permuted once, from the global seed, and
cut into J = ceil(n / b) batches of near-equal size (b = dataset.batch_size; the smallest
holds floor(n / J)). Every epoch visits the batches in the same order (cyclic mini-batches),
and each step is

    theta <- Pi_R( theta - eta (mean batch grad + m theta) + sqrt(2 eta) sigma xi ),

eta = training.max_lr <= 1/L, m = training.weight_decay > 0, R = training.pnsgd.projection_radius
(the projection applies only when ||theta|| > R), from theta_0 ~ N(0, (2 sigma^2 / m) I).

What the certificate assumes of this chain, and what `check_training` refuses otherwise:
* strong convexity: the linear model on unit-norm features with weight_decay = m > 0;
* smoothness: eta <= 1/L, L the loss's bound plus m, so every step is a (1 - eta m)-contraction;
* bounded gradients M (a bound on unit-norm data, not a clip) and a bounded domain: the
  projection radius R, without which the paper's theorem does not apply;
* plain constant steps (no momentum, no adaptive optimiser, no schedule), no augmentation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from src.data.batches import make_generator
from src.errors import ConfigError
from src.models.linear import gradient_bound, smoothness_bound
from src.models.model import ModelFactory
from src.privacy.pnsgd import MiniBatchChain
from src.seeds import derive_seed
from src.tracking import fmt
from src.noise import project_l2_
from src.training.algorithm import TrainingAlgorithm, refuse_foreign_keys
from src.training.checkpoints import checkpoint_name, save_checkpoint
from src.training.evaluate import Evaluator
from src.training.langevin import objective_grad, require_convex_setting, require_plain_descent

WHO = "training.algorithm=pnsgd"


@dataclass(frozen=True)
class MiniBatchConstants:
    """What a projected noisy SGD chain is: recorded in its checkpoint, checked before unlearning."""

    eta: float
    sigma: float
    m: float
    L: float
    M: float
    R: float  # projection radius
    T: int  # training epochs
    n: int
    batch_size: int  # dataset.batch_size
    batches: int  # J, steps per epoch
    smallest_batch: int
    seed: int  # the partition and the training noise derive from it

    @classmethod
    def from_config(cls, config, n: int) -> "MiniBatchConstants":
        t = config.training
        p = t.pnsgd
        smooth = smoothness_bound(config.model.n_classes) if p.smoothness == "auto" else float(p.smoothness)
        bound = gradient_bound(config.model.n_classes) if p.gradient_bound == "auto" else float(p.gradient_bound)
        b = min(int(config.dataset.batch_size), int(n))
        batches = math.ceil(n / b)
        return cls(eta=float(t.max_lr), sigma=float(p.sigma), m=float(t.weight_decay), L=smooth + float(t.weight_decay),
                   M=bound, R=float(p.projection_radius), T=int(t.epochs), n=int(n), batch_size=b, batches=batches,
                   smallest_batch=int(n) // batches, seed=int(config.global_seed))

    def record(self) -> dict:
        return asdict(self)

    def accountant(self) -> MiniBatchChain:
        return MiniBatchChain(n=self.n, batch_size=self.smallest_batch, batches=self.batches, m=self.m, eta=self.eta,
                              M=self.M, sigma=self.sigma, radius=self.R)

    @property
    def noise_std(self) -> float:
        return math.sqrt(2.0 * self.eta) * self.sigma

    @property
    def init_std(self) -> float:
        return math.sqrt(2.0 * self.sigma**2 / self.m)


def cyclic_batches(n: int, batches: int, seed: int, device) -> list[torch.Tensor]:
    """One permutation of the n slots (retain then forget), cut into `batches` near-equal
    consecutive pieces: the fixed batch j of every epoch. Data-independent (seed only)."""
    generator = make_generator(derive_seed(seed, "pnsgd-batches"), "cpu")
    order = torch.randperm(n, generator=generator)
    return [piece.to(device) for piece in torch.tensor_split(order, batches)]


def check_training(config, sizes=None) -> None:
    """Refuse a `training.algorithm: pnsgd` config the chain cannot run as analysed."""
    t = config.training
    if t.pnsgd is None:
        raise ConfigError("training.pnsgd: required when training.algorithm is 'pnsgd' (sigma, the temperature, "
                          "and projection_radius, the radius R of the ball the iterates are projected onto)")
    if t.langevin is not None or t.dp_sgd is not None:
        raise ConfigError(f"training.{'langevin' if t.langevin is not None else 'dp_sgd'}: not allowed with {WHO}: "
                          "the model is trained by one algorithm")
    if config.model.name not in ModelFactory.convex:
        raise ConfigError(f"model.name: {WHO} certifies only strongly convex objectives (a linear/logistic/softmax "
                          f"model with an l2 term > 0, constant step <= 1/L, iterates projected onto a ball). Model "
                          f"'{config.model.name}' is non-convex: no step is a contraction, so the W-infinity "
                          "distance the certificate tracks is unbounded; use iteration or contractive_coefficients")
    require_convex_setting(config, WHO)
    if t.weight_decay <= 0:
        raise ConfigError(f"training.weight_decay: {t.weight_decay} is the l2 coefficient m of the objective and must "
                          f"be > 0 for {WHO}: strong convexity m > 0 makes every step a contraction")
    require_plain_descent(t, "training", WHO, "the chain is plain mini-batch gradient descent")
    p = t.pnsgd
    smooth, bound = smoothness_bound(config.model.n_classes), gradient_bound(config.model.n_classes)
    if p.smoothness != "auto" and p.smoothness < smooth:
        raise ConfigError(f"training.pnsgd.smoothness: {p.smoothness} is below the loss's smoothness bound {smooth:g} "
                          "for unit-norm inputs; the certificate needs L >= the true constant")
    if p.gradient_bound != "auto" and p.gradient_bound < bound:
        raise ConfigError(f"training.pnsgd.gradient_bound: {p.gradient_bound} is below the per-example gradient bound "
                          f"{bound:.6g} for unit-norm inputs; gradients are not clipped, so M must bound them")
    L = (smooth if p.smoothness == "auto" else p.smoothness) + t.weight_decay
    if t.max_lr > 1.0 / L:
        raise ConfigError(f"training.max_lr: {t.max_lr} is above 1/L = {1.0 / L:.8g} (L = {L:.8g}, the loss's "
                          f"smoothness plus weight_decay): {WHO} needs a step <= 1/L for its contraction")


def initial_point_(theta: torch.Tensor, chain: MiniBatchConstants, generator: torch.Generator) -> None:
    with torch.no_grad():
        theta.copy_(chain.init_std * torch.randn(theta.shape, generator=generator, device=theta.device))


def pnsgd_step_(theta: torch.Tensor, grad: torch.Tensor, chain: MiniBatchConstants, add_noise) -> None:
    """theta <- Pi_R(theta - eta grad + noise): the noise before the projection (the paper's order)."""
    with torch.no_grad():
        theta.sub_(chain.eta * grad)
        add_noise(theta)
        project_l2_(theta, chain.R)


def slot_data(data):
    """The training examples in slot order: the retain set, then the forget set."""
    return torch.cat([data.retain.x, data.forget.x]), torch.cat([data.retain.y, data.forget.y])


class PNSGDTraining(TrainingAlgorithm):
    """`training.algorithm: pnsgd`: the chain above, on the train split (retain + forget)."""

    name = "pnsgd"
    section = "pnsgd"
    trains_by = "projected noisy SGD"
    orders_by_forget_set = True  # its batches are cut from the slots retain-then-forget

    @classmethod
    def check_config(cls, config, sizes=None) -> None:
        refuse_foreign_keys(config, cls)
        check_training(config, sizes)

    def fit(self, data, model, log, console, ckpt_dir=None, events=None) -> dict:
        """Returns the checkpoint's record (the chain's constants, checked before unlearning)."""
        config = self.config
        check_training(config)
        x, y = slot_data(data)
        chain = MiniBatchConstants.from_config(config, n=int(y.shape[0]))
        device = model.device
        generator = make_generator(derive_seed(config.global_seed, "pnsgd-training"), device)
        theta = model.theta
        initial_point_(theta, chain, generator)
        meta = {"epochs": chain.T, "dp_sgd": None, "pnsgd": chain.record()}
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / checkpoint_name(0), model.state_dict(), {**meta, "epoch": 0})
        batches = cyclic_batches(chain.n, chain.batches, chain.seed, device)

        def add_noise(t):
            t.add_(chain.noise_std * torch.randn(t.shape, generator=generator, device=device))

        evaluate = Evaluator(model)
        stride = max(1, chain.T // 100)
        for epoch in console.epochs(chain.T, "pnsgd training"):
            loss_sum, correct = 0.0, 0
            for idx in batches:
                loss, c, grad = objective_grad(model, [(x[idx], y[idx])], chain.m)
                pnsgd_step_(theta, grad, chain, add_noise)
                loss_sum += float(loss) * len(idx)
                correct += int(c)
            if epoch % stride == 0 or epoch == chain.T:
                train_loss, train_acc = loss_sum / chain.n, correct / chain.n
                log({"train_loss": train_loss, "train_accuracy": train_acc, "epoch": epoch})
                val_loss, val_acc = evaluate(data.val)
                log({"Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc, "epoch": epoch})
                console.line(f"pnsgd epoch {epoch}/{chain.T}  loss {fmt(train_loss)} acc {fmt(train_acc)}  "
                             f"val acc {fmt(val_acc)}")
        if not torch.isfinite(theta).all():
            raise ConfigError(f"training.max_lr: the chain diverged (non-finite weights after {chain.T} epochs); lower "
                              "training.max_lr")
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / checkpoint_name(chain.T), model.state_dict(), {**meta, "epoch": chain.T})
        return meta

"""Langevin training (`training.algorithm: langevin`): full-batch noisy gradient descent.

    theta_0     ~ N(init_mean, (2 sigma^2 / m) I)
    theta_{t+1} = theta_t - eta (grad L_D(theta_t) + m theta_t) + sqrt(2 eta) sigma xi_t,  t < T

with eta = training.max_lr, m = training.weight_decay, sigma = training.langevin.sigma and
T = training.epochs (one full-batch step is one pass over the data). This is the chain
whose law Langevin unlearning certifies (Chien et al. 2024): the initial variance
2 sigma^2 / m gives the initial law the LSI constant that every later step keeps, and
eta <= 1/L makes each gradient step a (1 - eta m)-contraction. sigma = 0 is noise-free
gradient descent, the training of the D2D baseline.

LangevinTraining is the training algorithm `langevin` (src/training/algorithm.py).
Validation lives here too (`check_training`): everything the certificate assumes of the
training, refused with the key, the value and what is needed (spec section 8.5).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from src.data.batches import make_generator
from src.errors import CheckpointError, ConfigError
from src.models.linear import gradient_bound, smoothness_bound
from src.models.model import ModelFactory
from src.seeds import derive_seed
from src.tracking import fmt
from src.training.algorithm import TrainingAlgorithm, refuse_foreign_keys
from src.training.checkpoints import checkpoint_name, save_checkpoint
from src.training.evaluate import Evaluator
from src.training.langevin_clipping import upstream_clipped_grad

INIT = "gaussian_lsi"  # N(init_mean, 2 sigma^2 / m): the only initial law the certificate covers


@dataclass(frozen=True)
class ChainConstants:
    """What a Langevin chain is: recorded in its checkpoint, checked before unlearning."""

    eta: float  # step size
    sigma: float  # temperature
    m: float  # l2 coefficient = strong convexity
    L: float  # smoothness of the whole objective (loss + l2)
    M: float  # per-example gradient bound of the loss
    T: int  # training steps
    init: str
    init_mean: float
    n: int  # training examples
    seed: int
    # compat.langevin_clipping: "upstream" is the original's clipped chain (recorded only then)
    clipping: str = "none"

    @classmethod
    def from_config(cls, config, n: int) -> "ChainConstants":
        t = config.training
        lv = t.langevin
        smooth = smoothness_bound(config.model.n_classes) if lv.smoothness == "auto" else float(lv.smoothness)
        bound = gradient_bound(config.model.n_classes) if lv.gradient_bound == "auto" else float(lv.gradient_bound)
        return cls(eta=float(t.max_lr), sigma=float(lv.sigma), m=float(t.weight_decay), L=smooth + float(t.weight_decay),
                   M=bound, T=int(t.epochs), init=INIT, init_mean=float(lv.init_mean), n=int(n),
                   seed=int(config.global_seed), clipping=config.compat.langevin_clipping)

    def record(self) -> dict:
        record = asdict(self)
        if self.clipping == "none":  # checkpoints from before the switch stay valid
            del record["clipping"]
        return record

    def gradient(self, model, parts, theta: torch.Tensor | None = None):
        """The step's gradient (loss, correct, grad): of the objective, or the original's
        clipped one under compat.langevin_clipping: upstream."""
        if self.clipping == "upstream":
            return upstream_clipped_grad(model, parts, self.m, self.M, theta)
        return objective_grad(model, parts, self.m, theta)

    @property
    def init_std(self) -> float:
        return math.sqrt(2.0 * self.sigma**2 / self.m)

    @property
    def noise_std(self) -> float:
        return math.sqrt(2.0 * self.eta) * self.sigma


# ---------------------------------------------------------------------------------------
# Validation


def convexity_message(config, who: str) -> str:
    """Spec section 8.5: why a non-convex model is refused."""
    return (f"model.name: {who} certifies only strongly convex objectives (linear/logistic/softmax model with an "
            f"l2 term > 0, full-batch, constant step <= 1/L). Model '{config.model.name}' is non-convex. The paper's "
            "non-convex bound (a projection-radius-dependent LSI constant) is not implemented; use iteration or "
            "contractive_coefficients instead.")


def require_convex_setting(config, who: str) -> None:
    """The model and data every convex certificate (Langevin, D2D) needs."""
    if config.model.name not in ModelFactory.convex:
        raise ConfigError(convexity_message(config, who))
    from src.data.datamodule import dataset_family

    family = dataset_family(config)
    if not getattr(family, "unit_norm", False):
        raise ConfigError(
            f"dataset.name: '{config.dataset.name}' is not allowed for {who}: its inputs are not unit-L2-normalised "
            "feature vectors (image datasets are also randomly augmented, which changes the objective at every "
            "step), so the smoothness L and gradient bound M of the certificate do not hold; use mnist_3v8, "
            "mnist_5k_3v8, cifar10_feature_3v8 or cifar10_feature_unit")


def require_plain_descent(section, prefix: str, who: str, steps: str) -> None:
    """Every convex certificate assumes plain gradient steps of a constant size: the section
    (`training` or `unlearning`) may have no momentum, no adaptive optimiser, no schedule."""
    if section.optim != "SGD" or section.momentum != 0 or section.nesterov:
        key, value = ((f"{prefix}.optim", section.optim) if section.optim != "SGD" else
                      (f"{prefix}.momentum", section.momentum) if section.momentum != 0 else
                      (f"{prefix}.nesterov", True))
        raise ConfigError(f"{key}: {value!r} is not allowed for {who}: {steps} (no momentum, no adaptive "
                          "optimiser); use optim SGD, momentum 0, nesterov false")
    if section.lr_schedule != "constant":
        raise ConfigError(f"{prefix}.lr_schedule: '{section.lr_schedule}' is not allowed for {who}: the step must be "
                          "constant; use constant")


def check_training(config, sizes=None) -> None:
    """Refuse a `training.algorithm: langevin` config the chain cannot run as analysed."""
    t = config.training
    if config.compat.langevin_clipping != "none" and config.model.n_classes != 2:
        raise ConfigError(f"compat.langevin_clipping: '{config.compat.langevin_clipping}' reproduces the original "
                          "Langevin code's binary chain: it needs model.n_classes: 2 (the original's multi-class code "
                          "already added the l2 term after clipping)")
    who = "training.algorithm=langevin"
    if t.langevin is None:
        raise ConfigError("training.langevin: required when training.algorithm is 'langevin' (at least sigma, the "
                          "temperature; 0 for noise-free gradient descent)")
    require_convex_setting(config, who)
    if t.weight_decay <= 0:
        raise ConfigError(f"training.weight_decay: {t.weight_decay} is the l2 coefficient m of the objective and must "
                          f"be > 0 for {who}: strong convexity m > 0 drives the whole certificate")
    require_plain_descent(t, "training", who, "the chain is plain gradient descent")
    if t.dp_sgd is not None:
        raise ConfigError(f"training.dp_sgd: not allowed with {who}: the model is trained by one or the other")
    lv = t.langevin
    smooth, bound = smoothness_bound(config.model.n_classes), gradient_bound(config.model.n_classes)
    if lv.smoothness != "auto" and lv.smoothness < smooth:
        raise ConfigError(f"training.langevin.smoothness: {lv.smoothness} is below the loss's smoothness bound "
                          f"{smooth:g} for unit-norm inputs; the certificate needs L >= the true constant")
    if lv.gradient_bound != "auto" and lv.gradient_bound < bound:
        raise ConfigError(f"training.langevin.gradient_bound: {lv.gradient_bound} is below the per-example gradient "
                          f"bound {bound:.6g} for unit-norm inputs; gradients are not clipped, so M must bound them")
    chain = ChainConstants.from_config(config, n=1)
    if lv.sigma > 0 and t.max_lr > 1.0 / chain.L:
        raise ConfigError(f"training.max_lr: {t.max_lr} is above 1/L = {1.0 / chain.L:.8g} (L = {chain.L:.8g}, the "
                          f"loss's smoothness plus weight_decay): {who} needs a step <= 1/L for its contraction")
    if lv.sigma == 0 and t.max_lr >= 2.0 / chain.L:
        raise ConfigError(f"training.max_lr: {t.max_lr} is at least 2/L = {2.0 / chain.L:.8g}: gradient descent "
                          "would not converge")
    if sizes is not None:
        require_full_batch(config, sizes.train, who)


def require_full_batch(config, n: int, who: str) -> None:
    if config.dataset.batch_size < n:
        raise ConfigError(f"dataset.batch_size: {config.dataset.batch_size} is smaller than the {n} training examples: "
                          f"{who} takes full-batch steps (minibatches need another accountant); set dataset.batch_size "
                          f"to at least {n}")


def check_chain_record(meta: dict, expected: ChainConstants, who: str) -> None:
    """Refuse a pretrained model that was not trained by this very chain."""
    record = (meta or {}).get("langevin")
    where = (meta or {}).get("path", "the pretrained model")
    if not record:
        raise CheckpointError(f"training.pretrained: {where} was not trained by full-batch Langevin gradient descent "
                              f"(its checkpoint has no Langevin record), so {who} cannot certify it; train it with "
                              "training.algorithm: langevin")
    if record.get("clipping", "none") != expected.clipping:
        raise CheckpointError(f"training.pretrained: {where} was trained with compat.langevin_clipping = "
                              f"{record.get('clipping', 'none')!r}, but this run's config says {expected.clipping!r}; "
                              f"{who} certifies only the chain it continues")
    # The seed is recorded but not compared: any draw of the chain is covered.
    for key, value in expected.record().items():
        if key == "seed":
            continue
        got = record.get(key)
        same = got == value if not isinstance(value, float) else (
            isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=1e-12, abs_tol=0.0))
        if not same:
            raise CheckpointError(f"training.pretrained: {where} was trained with {key} = {got!r}, but this run's "
                                  f"config describes {key} = {value!r}; {who} certifies only the chain it continues")


# ---------------------------------------------------------------------------------------
# The chain


def objective_grad(model, parts, m: float, theta: torch.Tensor | None = None):
    """Mean cross-entropy over all rows of `parts` [(x, y), ...] plus (m/2)||theta||^2,
    and its gradient in theta. Returns (loss of the data term, number correct, grad)."""
    theta = model.theta if theta is None else theta
    total = sum(int(y.shape[0]) for _, y in parts)
    loss = 0.0
    correct = torch.zeros((), dtype=torch.long, device=theta.device)
    for x, y in parts:
        if y.shape[0] == 0:
            continue
        logits = model(x) if theta is model.theta else model(x, theta=theta)
        loss = loss + F.cross_entropy(logits, y, reduction="sum") / total
        correct = correct + (logits.detach().argmax(1) == y).sum()
    objective = loss + 0.5 * m * theta.pow(2).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    return loss.detach(), correct, grad


def langevin_step_(theta: torch.Tensor, grad: torch.Tensor, eta: float, noise_std: float, noise) -> None:
    """theta <- theta - eta grad + noise_std xi (the gradient already holds the l2 term)."""
    with torch.no_grad():
        theta.sub_(eta * grad)
        if noise_std:
            theta.add_(noise_std * noise())


def initial_point_(theta: torch.Tensor, chain: ChainConstants, generator: torch.Generator) -> None:
    with torch.no_grad():
        theta.fill_(chain.init_mean)
        if chain.sigma:
            theta.add_(chain.init_std * torch.randn(theta.shape, generator=generator, device=theta.device))


class LangevinTraining(TrainingAlgorithm):
    """`training.algorithm: langevin`: the chain above, on the train split (retain + forget)."""

    name = "langevin"
    section = "langevin"
    trains_by = "full-batch (noisy) gradient descent"
    compat_switches = ("langevin_clipping",)

    @classmethod
    def check_config(cls, config, sizes=None) -> None:
        refuse_foreign_keys(config, cls)
        check_training(config, sizes)

    def fit(self, data, model, log, console, ckpt_dir=None, events=None) -> dict:
        """Returns the checkpoint's record (the chain's constants, checked before unlearning)."""
        config = self.config
        check_training(config)
        require_full_batch(config, len(data.train), "training.algorithm=langevin")
        chain = ChainConstants.from_config(config, n=len(data.train))
        device = model.device
        generator = make_generator(derive_seed(config.global_seed, "langevin-training"), device)
        theta = model.theta
        initial_point_(theta, chain, generator)
        meta = {"epochs": chain.T, "dp_sgd": None, "langevin": chain.record()}
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / checkpoint_name(0), model.state_dict(), {**meta, "epoch": 0})
        parts = [(data.train.x, data.train.y)]
        noise = lambda: torch.randn(theta.shape, generator=generator, device=device)  # noqa: E731
        stride = max(1, chain.T // 100)  # a hundred log rows, not one per step
        evaluate = Evaluator(model)
        for step in console.epochs(chain.T, "langevin training"):
            loss, correct, grad = chain.gradient(model, parts)
            langevin_step_(theta, grad, chain.eta, chain.noise_std, noise)
            if step % stride == 0 or step == chain.T:
                train_loss, train_acc = float(loss), float(correct) / len(data.train)
                log({"train_loss": train_loss, "train_accuracy": train_acc, "epoch": step})
                val_loss, val_acc = evaluate(data.val)
                log({"Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc, "epoch": step})
                console.line(f"langevin step {step}/{chain.T}  loss {fmt(train_loss)} acc {fmt(train_acc)}  "
                             f"val acc {fmt(val_acc)}")
        if not torch.isfinite(theta).all():
            raise ConfigError(f"training.max_lr: the chain diverged (non-finite weights after {chain.T} steps at "
                              f"step {chain.eta}); lower training.max_lr")
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / checkpoint_name(chain.T), model.state_dict(), {**meta, "epoch": chain.T})
        return meta

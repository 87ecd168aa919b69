"""DP-SGD training (upstream.md 3.6): per-example gradients, clipping, Gaussian noise.

Each example's gradient (over all parameters, one global L2 norm) is clipped to
`l2_norm_clip`, the clipped gradients are summed, N(0, (clip * noise_multiplier)^2) is
added from a generator seeded by `training.dp_sgd.seed`, and the sum is divided by the
expected batch size (Poisson sampling, what the accountant assumes) or the actual one
(`compat.dp_sgd_sampling: shuffle`, the reference's loader). The configured optimizer,
with the training weight decay, then takes the step.

The noise multiplier comes from src/privacy/dpsgd.py for the per-example budget that
group privacy over the forget set requires.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.func import grad_and_value, vmap
from torch.nn import functional as F

from src.data.batches import make_generator, num_batches, poisson_batches, shuffled_batches


@dataclass(frozen=True)
class DPSGDCalibration:
    """How a DP-SGD model is trained and what it guarantees; stored in its checkpoint."""

    l2_norm_clip: float
    noise_multiplier: float
    sampling_rate: float
    steps: int
    sampling: str  # poisson | shuffle
    group_size: int  # k = |forget set|
    group_rule: str  # tight | upstream
    target_epsilon: float  # for the group (the whole forget set)
    target_delta: float
    train_epsilon: float  # per example, the budget the noise was calibrated for
    train_delta: float
    achieved_train_epsilon: float
    certified_epsilon: float | None  # for the group, from what the accountant achieved
    certified_delta: float | None
    seconds: float

    @property
    def certificate_valid(self) -> bool:
        return (self.certified_epsilon is not None and self.certified_epsilon <= self.target_epsilon * (1 + 1e-12)
                and self.certified_delta <= self.target_delta * (1 + 1e-12))

    def invalid_reasons(self) -> list[str]:
        reasons = []
        if self.sampling != "poisson":
            reasons.append("compat.dp_sgd_sampling: shuffle trains with fixed-size shuffled batches, but the RDP "
                           "accountant assumes Poisson sampling (D11), so no certificate follows")
        elif not self.certificate_valid:
            reasons.append(f"compat.group_privacy: {self.group_rule}: the per-example delta {self.train_delta:.3g} "
                           f"gives the forget set only delta {self.certified_delta:.3g} by group privacy, above the "
                           f"target {self.target_delta:g} (D4)")
        return reasons


def calibrate(config, train_size: int, forget_size: int) -> DPSGDCalibration:
    from src.privacy.dpsgd import calibrate_noise_multiplier, group_privacy_to_example, group_privacy_to_group

    dp = config.training.dp_sgd
    batch_size = config.dataset.batch_size
    rule = config.compat.group_privacy
    sampling = config.compat.dp_sgd_sampling
    q = batch_size / train_size
    steps = config.training.epochs * math.ceil(train_size / batch_size)
    eps1, delta1 = group_privacy_to_example(dp.target_epsilon, dp.target_delta, forget_size, rule=rule)
    cal = calibrate_noise_multiplier(eps1, delta1, q, steps)
    certified_eps = certified_delta = None
    if sampling == "poisson":
        # The tight group lemma applied to what the accountant really achieved.
        certified_eps, certified_delta = group_privacy_to_group(cal.achieved_epsilon, delta1, forget_size, rule="tight")
    return DPSGDCalibration(
        l2_norm_clip=dp.l2_norm_clip, noise_multiplier=cal.noise_multiplier, sampling_rate=q, steps=steps,
        sampling=sampling, group_size=forget_size, group_rule=rule, target_epsilon=dp.target_epsilon,
        target_delta=dp.target_delta, train_epsilon=eps1, train_delta=delta1,
        achieved_train_epsilon=cal.achieved_epsilon, certified_epsilon=certified_eps,
        certified_delta=certified_delta, seconds=cal.seconds)


class DPSGD:
    def __init__(self, calibration: DPSGDCalibration, model, train_size: int, batch_size: int, seed: int):
        self.calibration = calibration
        self.model = model
        self.train_size = train_size
        self.batch_size = batch_size
        self.noise_generator = make_generator(seed, model.device)
        self.steps_per_epoch = num_batches(train_size, batch_size)

    @classmethod
    def from_config(cls, config, train_size: int, forget_size: int, model, log) -> "DPSGD":
        calibration = calibrate(config, train_size, forget_size)
        log({"train_epsilon": calibration.train_epsilon, "train_delta": calibration.train_delta})
        log({"dp_sigma": calibration.noise_multiplier})
        return cls(calibration, model, train_size, config.dataset.batch_size, config.training.dp_sgd.seed)

    def record(self) -> dict:
        return asdict(self.calibration)

    def batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        device = self.model.device
        if self.calibration.sampling == "poisson":
            return poisson_batches(self.train_size, self.calibration.sampling_rate, self.steps_per_epoch, generator,
                                   device)
        return shuffled_batches(self.train_size, self.batch_size, generator, device)

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.model.theta
        clip = self.calibration.l2_norm_clip
        if y.shape[0]:
            grads, (losses, logits) = per_example_gradients(self.model, x, y)
            clipped_sum = clip_and_sum(grads, clip)
            loss, correct = losses.mean(), (logits.argmax(1) == y).sum()
        else:  # an empty Poisson batch still takes its (pure-noise) step
            clipped_sum = torch.zeros_like(theta)
            loss, correct = torch.zeros((), device=theta.device), torch.zeros((), dtype=torch.long, device=theta.device)
        noise = torch.randn(theta.shape, generator=self.noise_generator, device=theta.device)
        noisy = clipped_sum + (clip * self.calibration.noise_multiplier) * noise
        denominator = self.calibration.sampling_rate * self.train_size if self.calibration.sampling == "poisson" \
            else max(y.shape[0], 1)
        optimizer.zero_grad()
        theta.grad = noisy / denominator
        optimizer.step()
        return loss.detach(), correct


def per_example_gradients(model, x: torch.Tensor, y: torch.Tensor):
    """[B, d] gradients of each example's loss with respect to theta, and (losses, logits)."""

    def loss_of_one(theta, xi, yi):
        logits = model.forward(xi.unsqueeze(0), theta)
        return F.cross_entropy(logits, yi.unsqueeze(0)), logits.squeeze(0)

    per_example = vmap(grad_and_value(loss_of_one, has_aux=True), in_dims=(None, 0, 0))
    grads, (losses, logits) = per_example(model.theta.detach(), x, y)
    return grads, (losses, logits)


def clip_and_sum(grads: torch.Tensor, clip: float) -> torch.Tensor:
    """Sum of the examples' gradients, each scaled to global L2 norm at most `clip`.

    A zero gradient keeps factor 1 (optax's NaN -> 1)."""
    norms = torch.linalg.vector_norm(grads, dim=1)
    factors = torch.clamp(clip / norms, max=1.0)
    return factors @ grads

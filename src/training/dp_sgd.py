"""DP-SGD training (the original code): per-example gradients, clipping, Gaussian noise.

Each example's gradient (over all parameters, one global L2 norm) is clipped to
`l2_norm_clip`, the clipped gradients are summed, N(0, (clip * noise_multiplier)^2) is
added from a stream derived from `training.dp_sgd.seed` (or OS entropy under
`secure_rng: true`), and the sum is divided by the
expected batch size (Poisson sampling, what the accountant assumes) or the actual one
(`compat.dp_sgd_sampling: shuffle`, the reference's loader). The configured optimizer,
with the training weight decay, then takes the step.

DPSGDTraining is the training algorithm `dp_sgd` (src/training/algorithm.py): the SGD
loop of src/training/sgd.py with these batches and steps.

The noise multiplier comes from src/privacy/dpsgd_calibration.py for the guarantee the
forget set (a group of k examples) requires.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from src.data.batches import num_batches, poisson_batches, shuffled_batches
from src.entropy import randomness
from src.privacy.dpsgd_calibration import DPSGDCalibration, calibrate_dp_sgd
from src.privacy.rounding import float32_at_least, radius_inside
from src.seeds import derive_seed
from src.training.sgd import SGDTraining


def calibration_for(config, train_size: int, forget_size: int) -> DPSGDCalibration:
    """The config's DP-SGD request, calibrated by src/privacy/dpsgd_calibration.py."""
    dp = config.training.dp_sgd
    return calibrate_dp_sgd(target_epsilon=dp.target_epsilon, target_delta=dp.target_delta,
                            l2_norm_clip=dp.l2_norm_clip, batch_size=config.dataset.batch_size,
                            epochs=config.training.epochs, train_size=train_size, forget_size=forget_size,
                            group_rule=config.compat.group_privacy, sampling=config.compat.dp_sgd_sampling)


class DPSGD:
    """DP-SGD steps on the train split. On a GPU each step is replayed from a CUDA graph
    over a fixed-size batch: the Poisson batch's indices padded to `capacity` with weight 0
    (vmap and graphs need static shapes, and padded examples add nothing to the sum)."""

    def __init__(self, calibration: DPSGDCalibration, model, split, batch_size: int, seed: int,
                 secure: bool = False):
        self.calibration = calibration
        self.model = model
        self.split = split
        self.train_size = len(split)
        self.batch_size = batch_size
        # The noise and the Poisson memberships are the mechanism: their own streams, derived
        # from training.dp_sgd.seed by purpose, or OS entropy in release mode (secure_rng).
        self.noise = randomness(secure, derive_seed(seed, "dp-sgd-noise"), model.device)
        self.membership = randomness(secure, derive_seed(seed, "dp-sgd-sampling"), model.device)
        self.steps_per_epoch = num_batches(self.train_size, batch_size)
        # Rounded up to float32 (the noise is float32): never below the accounted std.
        self.noise_std = float32_at_least(calibration.l2_norm_clip * calibration.noise_multiplier)
        # Poisson: divide by the expected batch size (what the accountant assumes);
        # shuffle: by the actual one, as the reference.
        self.poisson = calibration.sampling == "poisson"
        self.capacity = 2 * batch_size if self.poisson else batch_size
        self.graph = None
        self.use_graph = model.device.type == "cuda"
        if self.use_graph:
            self._static = {
                "idx": torch.zeros(self.capacity, dtype=torch.long, device=model.device),
                "weight": torch.zeros(self.capacity, device=model.device),
                "noise": torch.zeros_like(model.theta),
                "lr": torch.zeros((), device=model.device),
                "denominator": torch.ones((), device=model.device),
            }

    @classmethod
    def from_config(cls, config, split, forget_size: int, model, log) -> "DPSGD":
        calibration = calibration_for(config, len(split), forget_size)
        if calibration.train_epsilon is not None:
            log({"train_epsilon": calibration.train_epsilon, "train_delta": calibration.train_delta})
        log({"dp_sigma": calibration.noise_multiplier})
        return cls(calibration, model, split, config.dataset.batch_size, config.training.dp_sgd.seed,
                   secure=config.secure_rng)

    def record(self) -> dict:
        return asdict(self.calibration)

    def batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """One epoch of batches: Poisson memberships from the mechanism's own source (float64
        uniforms, accounted at calibration.accounted_sampling_rate); shuffled batches, which
        certify nothing, from the data-order generator."""
        device = self.model.device
        if self.poisson:
            return poisson_batches(self.train_size, self.calibration.sampling_rate, self.steps_per_epoch,
                                   self.membership, device)
        return shuffled_batches(self.train_size, self.batch_size, generator, device)

    def step(self, idx: torch.Tensor, optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One DP-SGD update on the examples `idx`; returns (mean loss, number correct)."""
        n = idx.shape[0]
        static_size = n <= self.capacity if self.poisson else n == self.batch_size
        if not self.use_graph or not static_size:
            return self._eager_step(idx, optimizer)
        s = self._static
        s["idx"].zero_()
        s["idx"][:n].copy_(idx)
        s["weight"].zero_()
        s["weight"][:n] = 1.0
        self.noise.normal_into(s["noise"])
        s["denominator"].fill_(self.denominator(n))
        s["lr"].fill_(optimizer.schedule(optimizer.step_count))
        optimizer.step_count += 1
        if self.graph is None:
            self._capture(optimizer)
        self.graph.replay()
        return self.loss_sum / max(n, 1), self.correct.clone()

    def denominator(self, n: int) -> float:
        """What the clipped, noised sum of a batch of n examples is divided by."""
        return self.calibration.sampling_rate * self.train_size if self.poisson else max(n, 1)

    def _update(self, x, y, weight, noise, denominator, optimizer_step):
        theta = self.model.theta
        clipped_sum, losses, logits = clipped_gradient_sum(self.model, x, y, self.calibration.l2_norm_clip, weight)
        theta.grad = (clipped_sum + self.noise_std * noise) / denominator
        optimizer_step()
        theta.grad = None
        return (losses * weight).sum(), ((logits.argmax(1) == y) * (weight > 0)).sum()

    def _eager_step(self, idx, optimizer):
        theta = self.model.theta
        noise = self.noise.normal(theta.numel(), theta.device)
        x, y = self.split.x[idx], self.split.y[idx]
        weight = torch.ones(idx.shape[0], device=theta.device)
        loss_sum, correct = self._update(x, y, weight, noise, self.denominator(idx.shape[0]), optimizer.step)
        return loss_sum / max(idx.shape[0], 1), correct

    def _capture(self, optimizer):
        s = self._static
        # warm up the kernels (and vmap's tracing) on a side stream before capturing
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        theta_before = self.model.theta.detach().clone()
        self.model.release_graph()
        with torch.cuda.stream(stream):
            x, y = self.split.x.index_select(0, s["idx"]), self.split.y.index_select(0, s["idx"])
            self._update(x, y, s["weight"], s["noise"], s["denominator"], lambda: None)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            x, y = self.split.x.index_select(0, s["idx"]), self.split.y.index_select(0, s["idx"])
            self.loss_sum, self.correct = self._update(x, y, s["weight"], s["noise"], s["denominator"],
                                                       lambda: optimizer.optimizer.step(s["lr"]))
        assert torch.equal(theta_before, self.model.theta.detach())  # capture itself ran nothing


def example_loss(model):
    """The loss of one example as a function of the parameters ({name: tensor}), and its
    logits: what per-example gradients differentiate (one member's, src/training/dp_sgd_ensemble.py)."""

    def loss_of_one(params, xi, yi):
        logits = functional_call(model.module, (params, model.buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0)), logits.squeeze(0)

    return loss_of_one


def per_example_gradients(model, x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor | None = None):
    """Each example's gradient with respect to every parameter tensor ({name: [B, *shape]}),
    and (losses, logits), at `theta` (default: the model's own). vmap over the parameters as
    separate tensors: slicing one flat vector inside vmap costs more than the gradients themselves."""
    params = model.unflatten((model.theta if theta is None else theta).detach())
    per_example = vmap(grad_and_value(example_loss(model), has_aux=True), in_dims=(None, 0, 0))
    grads, (losses, logits) = per_example(params, x, y)
    return grads, (losses, logits)


def clip_factors(flat: list[torch.Tensor], clip: float, weight: torch.Tensor, norms: torch.Tensor | None = None):
    """weight_i * min(1, clip / ||g_i||) per example, from its gradient's pieces `flat`
    ([..., B, p] each, one per parameter tensor): ||.|| is the global L2 norm over all of
    them, in float64 (`norms`, when the caller computed them so); a zero gradient keeps
    factor 1 (optax's NaN -> 1)."""
    if norms is None:
        norms = torch.sqrt(sum(g.double().pow(2).sum(-1) for g in flat))
    # aimed a hair inside the clip, so that float32 rounding leaves every norm <= clip
    return (torch.clamp(radius_inside(clip) / norms, max=1.0) * weight).to(flat[0].dtype)


def clipped_gradient_sum(model, x, y, clip: float, weight: torch.Tensor, theta: torch.Tensor | None = None):
    """sum_i weight_i * g_i * min(1, clip / ||g_i||) (clip_factors), g_i example i's gradient
    at `theta` (default: the model's own). Returns the sum as one vector in theta's layout,
    and (losses, logits)."""
    grads, (losses, logits) = per_example_gradients(model, x, y, theta)
    flat = [grads[name].flatten(1) for name in model.names]
    factors = clip_factors(flat, clip, weight)
    return torch.cat([factors @ g for g in flat]), losses, logits


class DPSGDTraining(SGDTraining):
    """`training.dp_sgd:` the SGD loop with DP-SGD's batches (Poisson, from the mechanism's
    own source) and steps (clipped per-example gradients plus noise); the calibration is
    the checkpoint's record, which the DP-SGD unlearning baseline reads."""

    name = "dp_sgd"
    records_learning_events = False  # its per-example clipped steps feed no logits to record

    def start(self, data, model, optimizer, log) -> None:
        self.dp = DPSGD.from_config(self.config, data.train, len(data.forget), model, log)

    def record(self) -> dict:
        return self.dp.record()

    def batches(self, data, generator, device):
        return self.dp.batches(generator)

    def step(self, idx, optimizer, generator):
        return self.dp.step(idx, optimizer)  # feature datasets: no augmentation

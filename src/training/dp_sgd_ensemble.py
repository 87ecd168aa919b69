"""DP-SGD training of N members as one vectorised ensemble: theta of shape [N, d].

Member i is the single DP-SGD training (src/training/dp_sgd.py, DPSGDTraining.fit) of
member_config(config, i): its initialisation from its global seed, its batches (Poisson
memberships from the 'dp-sgd-sampling' stream of its own `training.dp_sgd.seed`; under
`compat.dp_sgd_sampling: shuffle` a permutation from its 'pretrain-data' generator) and its
Gaussian noise (the 'dp-sgd-noise' stream of its own `training.dp_sgd.seed`, one vector of
d per step, in step order: the same draws from the same generators as its single run;
each member holds its own DPSGD object for them). The calibration (noise multiplier,
sampling rate, steps) depends on the sizes and the privacy request, not on the seeds: it
is computed once and is every member's, so each member's certificate is its single run's.

A step: every member's per-example gradients in one torch.func.vmap over members of the
vmap over examples, each example's gradient clipped to l2_norm_clip by its global norm
(clip_factors), the clipped gradients summed, the member's noise added, the sum divided as
its single run divides it, and one optimizer update of theta [N, d].

Batch sizes differ between members under Poisson sampling. The members of a chunk are
padded to the chunk's largest batch: a padded slot repeats example 0 with weight 0, so
that it adds exactly nothing to the clipped sum, the loss or the count of correct
predictions (the single run's CUDA-graph step pads its Poisson batch the same way). The
denominator stays the single run's: the expected batch size (Poisson) or the member's
actual one (shuffle).

Exactness: as in src/training/ensemble.py, a chunk of one member runs the single run's
own code (clipped_gradient_sum on its unpadded batch), so `chunk=1` reproduces the single
runs bit for bit on CPU; larger chunks agree with them to float rounding (batched matrix
products sum in another order).

Not here: release mode (secure_rng), whose noise and memberships come from OS entropy that
no member's seed replays, and networks with BatchNorm running statistics (one module's
buffers for every member): their members train one after another (src/training/members.py).
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value, vmap

from src.data.batches import make_generator, num_batches
from src.models.model import ModelFactory
from src.seeds import derive_seed
from src.training.dp_sgd import DPSGD, calibration_for, clip_factors, clipped_gradient_sum, example_loss
from src.training.ensemble import EnsembleModel, default_chunk, evaluate, initial_theta
from src.training.flat_model import FlatModel
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule

# Per-example gradients of one chunk of members: about this many floats (members x batch
# x d). On a CPU 8 MiB, which stays in cache: its float64 norms and clipped sums are
# memory-bound (measured on 2 cores, tiny_net, batches of 128, one thread: chunks of 4
# members 0.04 s per member-epoch, 16 members 0.10 s, one member 0.07 s); on a GPU 1 GiB.
CPU_PER_EXAMPLE_FLOATS = 1 << 21
CUDA_PER_EXAMPLE_FLOATS = 1 << 28


def dp_sgd_chunk(device, batch_size: int, num_parameters: int) -> int:
    """Members per chunk: as many as the per-example budget holds, at least one."""
    budget = CUDA_PER_EXAMPLE_FLOATS if torch.device(device).type == "cuda" else CPU_PER_EXAMPLE_FLOATS
    return max(1, min(default_chunk(device, batch_size), budget // max(1, batch_size * num_parameters)))


class DPSGDEnsemble:
    """The members `singles` (member_config of each) trained by DP-SGD together. `fit`
    returns theta [N, d] in an EnsembleModel; `rows[i]` are the rows member i's single run
    logs while it trains, `record` the calibration its checkpoint stores."""

    def __init__(self, singles, data, device, chunk: int | None = None):
        config = singles[0]
        if config.training.dp_sgd is None or config.secure_rng:
            raise ValueError("DPSGDEnsemble trains research-mode DP-SGD members only")
        self.singles, self.data = singles, data
        self.config = config
        device = torch.device(device)
        network = FlatModel(ModelFactory.create_model(config.model.name, config.model.n_classes, data.input_shape),
                            device)
        thetas = torch.stack([initial_theta(s, data.input_shape, s.global_seed) for s in singles])
        batch_size = config.dataset.batch_size
        self.model = EnsembleModel(network, thetas,
                                   chunk or dp_sgd_chunk(device, batch_size, network.num_parameters))
        self.network = network
        self.calibration = calibration_for(config, len(data.train), len(data.forget))
        # Each member's mechanism, as its single run builds it: its noise and membership
        # streams from its own training.dp_sgd.seed; the network only gives the device.
        self.mechanisms = [DPSGD(self.calibration, network, data.train, batch_size, s.training.dp_sgd.seed)
                           for s in singles]
        self.generators = [make_generator(derive_seed(s.global_seed, "pretrain-data"), device) for s in singles]
        first = []
        if self.calibration.train_epsilon is not None:
            first.append({"train_epsilon": self.calibration.train_epsilon, "train_delta": self.calibration.train_delta})
        first.append({"dp_sigma": self.calibration.noise_multiplier})
        self.rows = [list(first) for _ in singles]
        per_member = vmap(grad_and_value(example_loss(network), has_aux=True), in_dims=(None, 0, 0))
        self._per_example = vmap(per_member, in_dims=(0, 0, 0))

    @property
    def members(self) -> int:
        return len(self.singles)

    def record(self) -> dict:
        return self.mechanisms[0].record()

    def fit(self, on_epoch=None) -> EnsembleModel:
        """Every epoch of every member; `on_epoch(epoch, train_loss, val_loss)` (arrays over
        members) after each epoch's rows, where the caller checks and saves."""
        t = self.config.training
        model, device = self.model, self.model.device
        steps_per_epoch = num_batches(len(self.data.train), self.config.dataset.batch_size)
        optimizer = ScheduledOptimizer(make_optimizer(model.theta, t, t.weight_decay),
                                       make_schedule(t, max(t.epochs, 1) * steps_per_epoch))
        for epoch in range(1, t.epochs + 1):
            sum_loss = torch.zeros(self.members, device=device)
            correct = torch.zeros(self.members, device=device, dtype=torch.long)
            seen = [0] * self.members
            epochs = [dp.batches(generator) for dp, generator in zip(self.mechanisms, self.generators)]
            for step in zip(*epochs):
                loss, right = self._step(list(step), optimizer)
                sizes = torch.tensor([len(idx) for idx in step], device=device)
                sum_loss += loss * sizes
                correct += right
                seen = [s + len(idx) for s, idx in zip(seen, step)]
            train_loss = [float(sum_loss[i]) / max(seen[i], 1) for i in range(self.members)]
            train_acc = [float(correct[i]) / max(seen[i], 1) for i in range(self.members)]
            val_loss, val_acc = evaluate(model, self.data.val)
            for i, rows in enumerate(self.rows):
                rows.append({"train_loss": train_loss[i], "train_accuracy": train_acc[i], "epoch": epoch})
                rows.append({"Val (Train)_loss": float(val_loss[i]), "Val (Train)_accuracy": float(val_acc[i]),
                             "epoch": epoch})
            if on_epoch is not None:
                on_epoch(epoch, train_loss, val_loss)
        return model

    def _step(self, batches: list[torch.Tensor], optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One DP-SGD update of every member on its own batch; (mean loss, number correct) per member."""
        model = self.model
        d = model.num_parameters
        # each member's noise, one vector of d from its own stream, as its single run draws it
        noise = torch.stack([dp.noise.normal(d, model.device) for dp in self.mechanisms])
        thetas = model.theta.detach()
        grads, losses, correct = [], [], []
        for start, stop in model._chunks():
            if stop - start == 1:
                grad, loss, right = self._single(start, batches[start], thetas[start], noise[start])
            else:
                grad, loss, right = self._chunk(start, stop, batches[start:stop], thetas[start:stop], noise[start:stop])
            grads.append(grad)
            losses.append(loss)
            correct.append(right)
        model.theta.grad = torch.cat(grads)
        optimizer.step()
        model.theta.grad = None
        return torch.cat(losses), torch.cat(correct)

    def _single(self, i: int, idx, theta, noise):
        """Member i alone: the single run's own operations (DPSGD._update), bit for bit."""
        dp = self.mechanisms[i]
        x, y = dp.split.x[idx], dp.split.y[idx]
        weight = torch.ones(idx.shape[0], device=theta.device)
        # a fresh vector: the single run's theta layout (alignment), not a row of [N, d]
        clipped_sum, losses, logits = clipped_gradient_sum(self.network, x, y, self.calibration.l2_norm_clip, weight,
                                                           theta=theta.clone())
        grad = (clipped_sum + dp.noise_std * noise) / dp.denominator(idx.shape[0])
        loss_sum = (losses * weight).sum()
        right = ((logits.argmax(1) == y) * (weight > 0)).sum()
        return grad[None], (loss_sum / max(idx.shape[0], 1))[None], right[None]

    def _chunk(self, start: int, stop: int, batches, thetas, noise):
        """Members [start, stop): batches padded to the largest with weight 0, one vmap."""
        device = thetas.device
        sizes = [len(idx) for idx in batches]
        width = max(max(sizes), 1)
        idx = torch.zeros(stop - start, width, dtype=torch.long, device=device)
        weight = torch.zeros(stop - start, width, device=device)
        for row, members_idx in enumerate(batches):
            idx[row, :len(members_idx)] = members_idx
            weight[row, :len(members_idx)] = 1.0
        split = self.data.train
        x = split.x.index_select(0, idx.reshape(-1)).view(stop - start, width, *split.x.shape[1:])
        y = split.y[idx]
        network = self.network
        params = {name: chunk.reshape(stop - start, *shape)
                  for name, chunk, shape in zip(network.names, thetas.split(network.sizes, dim=1), network.shapes)}
        per_example, (losses, logits) = self._per_example(params, x, y)
        flat = [per_example[name].flatten(2) for name in network.names]  # [m, B, p] each
        # The global norms in float64 as the single run's, accumulated without a float64 copy
        # of the gradients (half the time on a CPU; 1e-15 relative from the single run's).
        norms = torch.sqrt(sum(torch.linalg.vector_norm(g, dim=-1, dtype=torch.float64).square() for g in flat))
        factors = clip_factors(flat, self.calibration.l2_norm_clip, weight, norms)  # [m, B]
        clipped_sum = torch.cat([torch.bmm(factors.unsqueeze(1), g).squeeze(1) for g in flat], dim=1)
        mechanisms = self.mechanisms[start:stop]
        noise_std = mechanisms[0].noise_std
        denominators = torch.tensor([dp.denominator(n) for dp, n in zip(mechanisms, sizes)], device=device,
                                    dtype=clipped_sum.dtype)
        grad = (clipped_sum + noise_std * noise) / denominators[:, None]
        loss_sum = (losses * weight).sum(1)
        right = ((logits.argmax(-1) == y) * (weight > 0)).sum(1)
        counts = torch.tensor([max(n, 1) for n in sizes], device=device, dtype=loss_sum.dtype)
        return grad, loss_sum / counts, right

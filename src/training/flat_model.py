"""A network seen as the paper sees it: one parameter vector theta in R^d.

Clipping, projection, noise and norms in the certified algorithms are all global over
every parameter, biases included (D33). Holding theta as one tensor makes each of them
one operation, and makes per-example gradients one [B, d] matrix. The nn.Module only
supplies the forward function, evaluated on views of theta via functional_call.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call

from src.errors import CheckpointError
from src.models.buffers import recompute_running_stats_
from src.training import compiled


class FlatModel:
    def __init__(self, module: nn.Module, device: torch.device | str = "cpu"):
        self.module = module.to(device)
        named = list(self.module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = nn.Parameter(torch.cat([p.detach().reshape(-1) for _, p in named]).clone())
        self.buffers = dict(self.module.named_buffers())
        # Training or evaluation behaviour (BatchNorm, dropout): a forward that records
        # gradients is a training forward, one without (every evaluation) an evaluation;
        # `mode` forces one. Switched only when it changes: one comparison per forward.
        self._forced: bool | None = None
        self._training = self.module.training
        # Convolutional networks declare `channels_last`: on the CPU their images are then
        # laid out NHWC in memory, so that oneDNN's convolutions take the activations as
        # they are instead of reordering them at every layer, and pooling runs along
        # channels: a tiny_net_cifar step takes 0.8-0.9x the CPU time, 0.7x together with
        # src/allocator.py (benchmarks/README.md).
        # The values are the NCHW network's up to rounding in the last bits, and as
        # deterministic. Not on GPUs (not measured there), and not in the functional path
        # (vmap has no memory formats).
        self.channels_last = bool(getattr(module, "channels_last", False))
        # None unless experiment.py enabled torch.compile for this (long, CPU) run
        self.compiled = compiled.for_model(self)
        # The module's parameters become plain attributes, rebound to views of theta at
        # every forward: a plain module call, cheaper than functional_call's swapping.
        self._slots = []
        for name in self.names:
            owner, _, attr = name.rpartition(".")
            submodule = self.module.get_submodule(owner)
            del submodule._parameters[attr]
            self._slots.append((submodule.__dict__, attr))

    @property
    def num_parameters(self) -> int:
        return self.theta.numel()

    @property
    def device(self) -> torch.device:
        return self.theta.device

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: chunk.view(shape) for name, chunk, shape in zip(self.names, theta.split(self.sizes), self.shapes)}

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        training = torch.is_grad_enabled() if self._forced is None else self._forced
        if training != self._training:
            self.module.train(training)
            self._training = training
        if theta is not None:  # another parameter vector (per-example gradients under vmap)
            return functional_call(self.module, (self.unflatten(theta), self.buffers), (x,))
        for (attributes, attr), chunk, shape in zip(self._slots, self.theta.split(self.sizes), self.shapes):
            attributes[attr] = chunk.view(shape)
        if self.channels_last and x.is_cpu and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compiled is not None and self.compiled.applies(x):
            logits = self.compiled(self.theta, x)
            if logits is not None:
                return logits
        return self.module(x)

    __call__ = forward

    @contextmanager
    def mode(self, training: bool):
        """Forward passes in training (True) or evaluation (False) behaviour, whatever the
        gradient mode."""
        previous, self._forced = self._forced, training
        try:
            yield
        finally:
            self._forced = previous

    def recompute_running_stats(self, x: torch.Tensor) -> int:
        """BatchNorm running statistics from `x` alone (src/models/buffers.py)."""
        with self.mode(True):
            return recompute_running_stats_(self.module, self.forward, x)

    def release_graph(self) -> None:
        """Rebind the module to views that carry no autograd history.

        The views bound by the last forward keep its graph, and theta's gradient
        accumulator, alive; a CUDA-graph capture must not inherit them (their stream)."""
        detached = self.theta.detach()
        for (attributes, attr), chunk, shape in zip(self._slots, detached.split(self.sizes), self.shapes):
            attributes[attr] = chunk.view(shape)

    def norm(self) -> float:
        return float(torch.linalg.vector_norm(self.theta.detach()))

    # -- checkpoints: ordinary state_dicts, so any PyTorch code can load them ---------
    # The parameters, then the module's persistent buffers (BatchNorm statistics).

    def _persistent_buffers(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict(keep_vars=True))  # the parameters are plain attributes now

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {name: t.detach().cpu().clone() for name, t in self.unflatten(self.theta).items()}
        state.update({name: b.detach().cpu().clone() for name, b in self._persistent_buffers().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        buffers = self._persistent_buffers()
        missing = [n for n in (*self.names, *buffers) if n not in state]
        unexpected = [n for n in state if n not in self.names and n not in buffers]
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not fit this model: missing {missing or 'none'}, unexpected {unexpected or 'none'}"
            )
        for name, shape in zip(self.names, self.shapes):
            if tuple(state[name].shape) != tuple(shape):
                raise CheckpointError(
                    f"{source}: parameter '{name}' has shape {tuple(state[name].shape)}, the model needs {tuple(shape)}"
                )
        for name, buffer in buffers.items():
            if tuple(state[name].shape) != tuple(buffer.shape):
                raise CheckpointError(
                    f"{source}: buffer '{name}' has shape {tuple(state[name].shape)}, the model needs {tuple(buffer.shape)}"
                )
        flat = torch.cat([state[name].reshape(-1).to(self.theta.dtype) for name in self.names])
        with torch.no_grad():
            self.theta.copy_(flat.to(self.device))
            for name, buffer in buffers.items():
                buffer.copy_(state[name].to(buffer.device, buffer.dtype))

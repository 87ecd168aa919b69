"""A network seen as the paper sees it: one parameter vector theta in R^d.

Clipping, projection, noise and norms in the certified algorithms are all global over
every parameter, biases included (D33). Holding theta as one tensor makes each of them
one operation, and makes per-example gradients one [B, d] matrix. The nn.Module only
supplies the forward function, evaluated on views of theta via functional_call.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from src.errors import CheckpointError


class FlatModel:
    def __init__(self, module: nn.Module, device: torch.device | str = "cpu"):
        self.module = module.to(device)
        named = list(self.module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = nn.Parameter(torch.cat([p.detach().reshape(-1) for _, p in named]).clone())
        self.buffers = dict(self.module.named_buffers())

    @property
    def num_parameters(self) -> int:
        return self.theta.numel()

    @property
    def device(self) -> torch.device:
        return self.theta.device

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: chunk.view(shape) for name, chunk, shape in zip(self.names, theta.split(self.sizes), self.shapes)}

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        params = self.unflatten(self.theta if theta is None else theta)
        return functional_call(self.module, (params, self.buffers), (x,))

    __call__ = forward

    def norm(self) -> float:
        return float(torch.linalg.vector_norm(self.theta.detach()))

    # -- checkpoints: ordinary state_dicts, so any PyTorch code can load them ---------

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().cpu().clone() for name, t in self.unflatten(self.theta).items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        missing = [n for n in self.names if n not in state]
        unexpected = [n for n in state if n not in self.names]
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not fit this model: missing {missing or 'none'}, unexpected {unexpected or 'none'}"
            )
        for name, shape in zip(self.names, self.shapes):
            if tuple(state[name].shape) != tuple(shape):
                raise CheckpointError(
                    f"{source}: parameter '{name}' has shape {tuple(state[name].shape)}, the model needs {tuple(shape)}"
                )
        flat = torch.cat([state[name].reshape(-1).to(self.theta.dtype) for name in self.names])
        with torch.no_grad():
            self.theta.copy_(flat.to(self.device))

"""Multi-layer perceptrons of the reference: flatten -> Dense -> ReLU -> ... -> Dense."""

import math

import torch
from torch import nn

from src.models.init import LECUN, flax_init_


class MLP(nn.Module):
    """Dense layers with ReLU between them, lecun-normal initialised as flax does.

    Images are flattened in the layout the data path gives (N, C, H, W); for one channel
    this equals the reference's channels-last flattening.
    """

    def __init__(self, input_shape, hidden: tuple[int, ...], num_classes: int, generator=None):
        super().__init__()
        widths = (math.prod(input_shape), *hidden, num_classes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        for layer in self.layers:
            flax_init_(layer, LECUN, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def two_layer_net(input_shape, num_classes, generator=None):
    """TwoLayerNN: Dense 5 -> ReLU -> Dense n."""
    return MLP(input_shape, (5,), num_classes, generator)


def three_layer_net(input_shape, num_classes, generator=None):
    """ThreeLayerNN: Dense 32 -> ReLU -> Dense 32 -> ReLU -> Dense n (the feature models)."""
    return MLP(input_shape, (32, 32), num_classes, generator)

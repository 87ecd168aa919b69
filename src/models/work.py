"""The arithmetic of a training step, to size the CPU thread count by (src/threads.py).

Counted from one forward pass on a single zero example: every nn.Linear and nn.Conv2d
multiplies out.numel() outputs by its fan-in. The rest (ReLU, pooling, the loss) is
memory traffic of the same order as its input and is left out. Backward costs about
twice the forward, so a step is 3 x forward x batch.
"""

from __future__ import annotations

import torch
from torch import nn


def forward_flops(module: nn.Module, input_shape) -> int:
    """Floating-point operations (2 per multiply-add) of one example's forward pass.

    `input_shape` is the config's channels-last shape ([H, W, C] or [d])."""
    shape = tuple(input_shape)
    x = torch.zeros(1, shape[-1], *shape[:-1]) if len(shape) == 3 else torch.zeros(1, *shape)
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2 * output.numel() * layer.in_features
        elif isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += 2 * output.numel() * (layer.in_channels // layer.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def training_step_flops(module: nn.Module, input_shape, batch_size: int) -> int:
    """Forward and backward (about twice the forward) of one batch."""
    return 3 * batch_size * forward_flops(module, input_shape)

"""Flax's default initialisers in PyTorch, so models start from the reference's distribution.

Flax `nn.Dense` / `nn.Conv` use lecun_normal (variance_scaling(1, fan_in, truncated_normal))
and zero bias; the CIFAR network uses he_normal (scale 2). jax draws truncated_normal(-2, 2)
and divides the standard deviation by 0.8796..., the std of a unit normal truncated to
[-2, 2], so the realised std is sqrt(scale / fan_in) (the original code).
PyTorch's defaults (kaiming_uniform, uniform bias) differ.
"""

import math

import torch
from torch import nn

TRUNCATED_STD = 0.87962566103423978


def variance_scaling_(weight: torch.Tensor, scale: float, fan_in: int, generator: torch.Generator | None) -> None:
    std = math.sqrt(scale / fan_in) / TRUNCATED_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=generator)


def flax_init_(module: nn.Module, scale: float, generator: torch.Generator | None) -> None:
    """lecun_normal (scale 1) or he_normal (scale 2) weights, zero bias."""
    weight = module.weight
    fan_in = weight[0].numel()  # in_features, or C_in * kh * kw for a convolution
    with torch.no_grad():
        variance_scaling_(weight, scale, fan_in, generator)
        if module.bias is not None:
            module.bias.zero_()


LECUN = 1.0
HE = 2.0

"""Tensor-resident batching: shuffling and augmentation on whole batches, on the device.

The reference ran torchvision transforms per image in DataLoader workers, with an
unseeded global generator (D18). Here every random choice comes from a torch.Generator
seeded from the config, and each batch is augmented with a handful of tensor operations.
Data are stored normalised, so "fill with black" means fill with the normalised value of
a zero pixel.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """A random permutation cut into batches; the last one may be smaller (drop_last=False)."""
    return list(torch.randperm(n, generator=generator, device=device).split(batch_size))


def poisson_batches(n: int, rate: float, num_batches: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """Poisson sampling: each example joins each batch independently with probability `rate`.

    This is what the DP-SGD accountant assumes (decisions.md, D11). Batch sizes vary and
    can be 0.
    """
    batches = []
    for _ in range(num_batches):
        mask = torch.rand(n, generator=generator, device=device) < rate
        batches.append(mask.nonzero().squeeze(1))
    return batches


def num_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


class MnistAugmentation:
    """RandomRotation(10) (uniform angle in [-10, 10] degrees, nearest neighbour, black
    fill) then RandomHorizontalFlip(0.5), as the reference's MNIST training transform
    (D28 keeps the flip). Rotation about the image centre, as torchvision does.

    Nearest-neighbour rotation is a gather: each output pixel reads the input pixel its
    rotated position rounds to (grid_sample did the same ten times slower on a CPU).
    """

    def __init__(self, fill: torch.Tensor, degrees: float = 10.0):
        self.fill = fill.view(1, -1, 1, 1)
        self.degrees = degrees

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        angle = (torch.rand(n, generator=generator, device=x.device) * 2 - 1) * math.radians(self.degrees)
        cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        ys = (torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2).view(1, h, 1)
        xs = (torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2).view(1, 1, w)
        src_x = torch.round(cos * xs - sin * ys + (w - 1) / 2)
        src_y = torch.round(sin * xs + cos * ys + (h - 1) / 2)
        inside = (src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)
        index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).long().view(n, 1, h * w).expand(n, c, h * w)
        rotated = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
        rotated = torch.where(inside.unsqueeze(1), rotated, self.fill)
        return _random_hflip(rotated, generator)


class CifarAugmentation:
    """RandomCrop(32, padding=4) with black padding, then RandomHorizontalFlip(0.5)."""

    def __init__(self, fill: torch.Tensor, padding: int = 4):
        self.fill = fill.view(1, -1, 1, 1)
        self.padding = padding

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x - self.fill, (p, p, p, p)) + self.fill
        top = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
        left = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return _random_hflip(padded[batch, channel, rows, cols], generator)


def _random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

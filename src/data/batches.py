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


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """A random permutation cut into batches; the last one may be smaller (drop_last=False)."""
    return list(torch.randperm(n, generator=generator, device=device).split(batch_size))


def poisson_batches(n: int, rate: float, num_batches: int, source, device) -> list[torch.Tensor]:
    """Poisson sampling: each example joins each batch independently with probability `rate`.

    This is what the DP-SGD accountant assumes (docs/differences.md#dp-sgd-sampling). Batch sizes vary and
    can be 0. The memberships compare float64 uniforms from `source` (src/entropy.py) with
    the rate: a float32 uniform on its 2^-24 grid would join with a probability up to
    2^-24 above the rate, which no accountant would know of; the float64 excess (2^-52 at
    most) is what the accountant adds (privacy/rounding.bernoulli_rate_bound).
    """
    batches = []
    for _ in range(num_batches):
        mask = source.uniform64(n, device) < rate
        batches.append(mask.nonzero().squeeze(1))
    return batches


def num_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


class GatherAugmentation:
    """A random choice among precomputed pixel maps, applied as ONE gather per batch.

    Each map says, for every output pixel, which input pixel it copies (or the fill
    value). Nearest-neighbour rotation, crop-with-padding and flips are all such maps, so
    a whole batch is augmented by one index lookup instead of per-image work.
    """

    def __init__(self, maps: torch.Tensor, fill: torch.Tensor, shape: tuple[int, int]):
        self.maps = maps  # [M, H*W] int64 indices into H*W + 1 (the last is the fill)
        self.fill = fill.view(1, -1, 1)
        self.shape = shape

    def to(self, device) -> "GatherAugmentation":
        return GatherAugmentation(self.maps.to(device), self.fill.to(device).view(-1), self.shape)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Which map each of n images gets (the only random part)."""
        return torch.randint(0, self.maps.shape[0], (n,), generator=generator, device=self.maps.device)

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        pixels = self.shape[0] * self.shape[1]
        index = self.maps[choice].unsqueeze(1).expand(n, c, pixels)
        padded = torch.cat([x.reshape(n, c, pixels), self.fill.expand(n, c, 1)], dim=2)
        return padded.gather(2, index).view(n, c, *self.shape)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.draw(x.shape[0], generator))

    # Many batches of one split (ensembles, src/training/ensemble.py): pad the split once,
    # then each batch is one row selection and one gather; the same pixels as `apply`.
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """A whole split [n, c, H, W] -> [n, c, H*W + 1], the fill value appended."""
        n, c = x.shape[:2]
        return torch.cat([x.reshape(n, c, -1), self.fill.expand(n, c, 1)], dim=2)

    def apply_rows(self, padded: torch.Tensor, idx: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """`apply(x[idx], choice)` for a padded split."""
        rows = padded.index_select(0, idx)
        n, c = rows.shape[:2]
        index = self.maps.index_select(0, choice).unsqueeze(1).expand(n, c, self.maps.shape[1])
        return rows.gather(2, index).view(n, c, *self.shape)


def _with_flips(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Every map, and every map followed by a horizontal flip (p = 0.5 each)."""
    flipped = maps.view(-1, height, width).flip(-1).reshape(maps.shape[0], -1)
    return torch.cat([maps, flipped])


def rotation_maps(height: int, width: int, degrees: float, angles: int = 401) -> torch.Tensor:
    """Nearest-neighbour rotation about the image centre by `angles` evenly spaced angles in
    [-degrees, degrees]: torchvision's RandomRotation(degrees) draws the angle uniformly,
    and 0.05-degree steps change no nearest neighbour of a 28 x 28 image that matters
    (tests/test_augmentation.py compares the two distributions)."""
    theta = torch.linspace(-math.radians(degrees), math.radians(degrees), angles, dtype=torch.float64)
    cos, sin = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    ys = (torch.arange(height, dtype=torch.float64) - (height - 1) / 2).view(1, height, 1)
    xs = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2).view(1, 1, width)
    src_x = torch.round(cos * xs - sin * ys + (width - 1) / 2)
    src_y = torch.round(sin * xs + cos * ys + (height - 1) / 2)
    inside = (src_x >= 0) & (src_x <= width - 1) & (src_y >= 0) & (src_y <= height - 1)
    index = torch.where(inside, src_y * width + src_x, torch.full_like(src_x, height * width))
    return index.long().view(angles, -1)


def crop_maps(height: int, width: int, padding: int) -> torch.Tensor:
    """Every (2p+1)^2 window of the image padded by p on each side (RandomCrop(padding=p))."""
    maps = []
    rows, cols = torch.arange(height).view(-1, 1), torch.arange(width).view(1, -1)
    for dy in range(-padding, padding + 1):
        for dx in range(-padding, padding + 1):
            src_y, src_x = rows + dy, cols + dx
            inside = (src_y >= 0) & (src_y < height) & (src_x >= 0) & (src_x < width)
            maps.append(torch.where(inside, src_y * width + src_x, torch.full_like(src_y * src_x, height * width)))
    return torch.stack(maps).view(len(maps), -1)


def MnistAugmentation(fill: torch.Tensor, degrees: float = 10.0, shape=(28, 28)) -> GatherAugmentation:
    """RandomRotation(10) (nearest neighbour, black fill) then RandomHorizontalFlip(0.5), the
    reference's MNIST training transform (D28 keeps the flip)."""
    maps = _with_flips(rotation_maps(*shape, degrees), *shape)
    return GatherAugmentation(maps.to(fill.device), fill, shape)


def CifarAugmentation(fill: torch.Tensor, padding: int = 4, shape=(32, 32)) -> GatherAugmentation:
    """RandomCrop(32, padding=4) with black padding, then RandomHorizontalFlip(0.5)."""
    maps = _with_flips(crop_maps(*shape, padding), *shape)
    return GatherAugmentation(maps.to(fill.device), fill, shape)

"""Our batched augmentation draws from the same distribution as the reference's per-image
torchvision transforms (issue #8: bit-for-bit equality is not required, the distribution is)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from src.data.batches import make_generator
from src.data.image_transforms import cifar_augmentation, mnist_augmentation, normalise_images
from src.data.mnist5k_files import load_mnist_5k

N = 3000
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def torchvision_samples(image: np.ndarray, transform, n: int) -> torch.Tensor:
    from PIL import Image

    torch.manual_seed(0)
    pil = Image.fromarray(image)
    return torch.stack([transform(pil) for _ in range(n)])


def ours_samples(image: np.ndarray, augmentation, mean, std, n: int) -> torch.Tensor:
    x = normalise_images(np.repeat(image[None], n, axis=0), mean, std, "cpu")
    return augmentation(x, make_generator(0, "cpu"))


def centre_of_mass_x(images: torch.Tensor) -> np.ndarray:
    ink = images.sum(1).clamp(min=0) if images.shape[1] > 1 else (images[:, 0] - images[:, 0].min()).clamp(min=0)
    cols = torch.arange(ink.shape[-1], dtype=torch.float)
    return ((ink.sum(1) * cols).sum(1) / ink.sum((1, 2))).numpy()


def orientation(images: torch.Tensor) -> np.ndarray:
    """Angle of the ink's principal axis: moves with the rotation angle."""
    ink = (images[:, 0] - images[:, 0].min()).clamp(min=0)
    h, w = ink.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float), indexing="ij")
    mass = ink.sum((1, 2))
    mx, my = (ink * xs).sum((1, 2)) / mass, (ink * ys).sum((1, 2)) / mass
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    mu20, mu02, mu11 = (ink * dx * dx).sum((1, 2)), (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2))
    return (0.5 * torch.atan2(2 * mu11, mu20 - mu02)).numpy()


@pytest.mark.parametrize("digit_index", [3, 1234])
def test_mnist_rotation_and_flip_match_torchvision(digit_index):
    import torchvision.transforms as T

    image = load_mnist_5k()[0][digit_index]
    reference = torchvision_samples(image, T.Compose([T.RandomRotation(10), T.RandomHorizontalFlip(), T.ToTensor(),
                                                      T.Normalize(MNIST_MEAN, MNIST_STD)]), N)
    ours = ours_samples(image, mnist_augmentation(MNIST_MEAN, MNIST_STD, "cpu"), MNIST_MEAN, MNIST_STD, N)
    assert ours.shape == reference.shape
    # the mean image and the per-pixel spread agree
    assert (ours.mean(0) - reference.mean(0)).abs().max() < 0.15
    assert (ours.std(0) - reference.std(0)).abs().mean() < 0.03
    # the flip (centre of mass left/right) and the rotation angle (ink orientation) are
    # distributed alike: two-sample Kolmogorov-Smirnov
    for statistic in (centre_of_mass_x, orientation):
        assert stats.ks_2samp(statistic(ours), statistic(reference)).pvalue > 1e-3, statistic.__name__
    # and a wrong augmentation would be caught: no rotation at all differs clearly
    flip_only = torchvision_samples(image, T.Compose([T.RandomHorizontalFlip(), T.ToTensor(),
                                                      T.Normalize(MNIST_MEAN, MNIST_STD)]), N)
    assert stats.ks_2samp(orientation(ours), orientation(flip_only)).pvalue < 1e-6


def test_cifar_crop_and_flip_match_torchvision():
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    reference = torchvision_samples(image, T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                                      T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]), N)
    ours = ours_samples(image, cifar_augmentation(CIFAR_MEAN, CIFAR_STD, "cpu"), CIFAR_MEAN, CIFAR_STD, N)
    assert (ours.mean(0) - reference.mean(0)).abs().mean() < 0.05
    black = torch.tensor([-m / s for m, s in zip(CIFAR_MEAN, CIFAR_STD)]).view(1, 3, 1, 1)
    # how much padding shows: the crop offset's distribution
    padding_ours = (ours - black).abs().lt(1e-5).all(1).float().mean((1, 2)).numpy()
    padding_reference = (reference - black).abs().lt(1e-5).all(1).float().mean((1, 2)).numpy()
    assert stats.ks_2samp(padding_ours, padding_reference).pvalue > 1e-3
    assert padding_ours.mean() == pytest.approx(padding_reference.mean(), rel=0.05)
    for statistic in (centre_of_mass_x,):
        assert stats.ks_2samp(statistic(ours), statistic(reference)).pvalue > 1e-3

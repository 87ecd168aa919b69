"""The data of Langevin unlearning (Chien et al. 2024): feature vectors of unit L2 norm.

The certificate's constants (smoothness L, gradient bound M) hold for ||x|| <= 1, so every
row is divided by its norm; there is no augmentation (it would change the objective at
every step). Binary tasks code their two classes as in the paper: the first class named
is label 1 (y = +1 of the logistic loss), the second label 0 (y = -1).

* `mnist_3v8`: MNIST digits 3 (label 1) and 8 (label 0) from the IDX files under
  dataset.root: pixels / 255 - 0.5, flattened to 784, unit-normed. 11,982 train, 1,984 test.
* `mnist_5k_3v8`: the same task on the bundled mnist_5k digits (offline): 800 train, 200 test.
* `mnist_5k_unit`: all ten classes of the bundled mnist_5k digits, unit-normed (offline):
  4,000 train, 1,000 test; the 10-class miniature of Langevin unlearning.
* `cifar10_feature_3v8`: cat (3, label 1) vs ship (8, label 0) on the ResNet-18 feature
  files; 10,000 train, 2,000 test.
* `cifar10_feature_unit`: all ten classes of the same feature files, unit-normed.
"""

from __future__ import annotations

import numpy as np
import torch

from src.data.feature_dataset import FeatureDataset
from src.data.mnist_dataset import MNIST
from src.data.raw import RawDataset

POSITIVE, NEGATIVE = 3, 8  # MNIST "3", CIFAR-10 "cat"; MNIST "8", CIFAR-10 "ship"


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its L2 norm (an all-zero row stays zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def binary_rows(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the two classes, in file order, labelled 1 (POSITIVE) and 0 (NEGATIVE)."""
    keep = (y == POSITIVE) | (y == NEGATIVE)
    return x[keep], (y[keep] == POSITIVE).long()


def _mnist_pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0).sub(0.5).flatten(1)


def _as_raw(train_x, train_y, test_x, test_y, num_classes, device) -> RawDataset:
    return RawDataset(train_x=unit_rows(train_x).to(device), train_y=train_y.to(device),
                      test_x=unit_rows(test_x).to(device), test_y=test_y.to(device),
                      num_classes=num_classes, input_shape=(train_x.shape[1],))


class MNIST3v8:
    official_sizes = (11982, 1984)
    input_shape = (784,)
    num_classes = 2
    fixed_shape = True
    unit_norm = True
    files_present = staticmethod(MNIST.files_present)

    @staticmethod
    def images(config):
        from src.data.mnist_files import load_mnist

        return (*load_mnist(config.dataset.root, train=True), *load_mnist(config.dataset.root, train=False))

    def load(self, config, device) -> RawDataset:
        train_images, train_labels, test_images, test_labels = self.images(config)
        train = binary_rows(_mnist_pixels(train_images), torch.from_numpy(train_labels))
        test = binary_rows(_mnist_pixels(test_images), torch.from_numpy(test_labels))
        return _as_raw(*train, *test, 2, device)


class MNIST5k3v8(MNIST3v8):
    official_sizes = (800, 200)

    @staticmethod
    def files_present(config) -> bool:
        return True

    @staticmethod
    def images(config):
        from src.data.mnist5k_files import load_mnist_5k

        return load_mnist_5k()


class MNIST5kUnit(MNIST5k3v8):
    official_sizes = (4000, 1000)
    num_classes = 10

    def load(self, config, device) -> RawDataset:
        train_images, train_labels, test_images, test_labels = self.images(config)
        return _as_raw(_mnist_pixels(train_images), torch.from_numpy(train_labels).long(),
                       _mnist_pixels(test_images), torch.from_numpy(test_labels).long(), 10, device)


class UnitFeatures(FeatureDataset):
    """The CIFAR-10 feature files with unit-norm rows: all classes, or cat vs ship."""

    unit_norm = True

    def __init__(self, binary: bool):
        super().__init__("cifar10", 2 if binary else 10)
        self.binary = binary
        self.official_sizes = (10000, 2000) if binary else (50000, 10000)

    def load(self, config, device) -> RawDataset:
        from src.data.feature_files import load_feature_file

        train_path, test_path = self.paths(config)
        train, test = load_feature_file(train_path), load_feature_file(test_path)
        if self.binary:
            train, test = binary_rows(*train), binary_rows(*test)
        return _as_raw(*train, *test, self.num_classes, device)

    def probe_sizes(self, config):
        if not self.binary:
            return super().probe_sizes(config)
        sizes = []
        for path in self.paths(config):
            labels = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["labels"]
            sizes.append(int(((labels == POSITIVE) | (labels == NEGATIVE)).sum()))
        return tuple(sizes)

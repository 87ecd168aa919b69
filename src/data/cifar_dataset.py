"""CIFAR-10 and CIFAR-100 images: normalised with the reference's constants (CIFAR-100's are
those feature_extractor.py uses), random crop + flip augmentation."""

from __future__ import annotations

from pathlib import Path

from src.data.image_transforms import cifar_augmentation, image_dataset
from src.data.raw import RawDataset


class CIFAR10:
    official_sizes = (50000, 10000)
    input_shape = (32, 32, 3)
    num_classes = 10
    fixed_shape = True

    @staticmethod
    def files_present(config) -> bool:
        return (Path(config.dataset.root) / "cifar-10-batches-py" / "data_batch_1").exists()

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data.cifar_files import CIFAR_MEAN_STD, load_cifar

        mean, std = CIFAR_MEAN_STD["cifar10"]
        root = config.dataset.root
        return image_dataset(load_cifar(root, "cifar10", train=True), load_cifar(root, "cifar10", train=False),
                             mean, std, cifar_augmentation, (32, 32, 3), device)


class CIFAR100:
    """The 100 fine classes of torchvision's cifar-100-python/ files (src/data/cifar_files.py)."""

    official_sizes = (50000, 10000)
    input_shape = (32, 32, 3)
    num_classes = 100
    fixed_shape = True

    @staticmethod
    def files_present(config) -> bool:
        return (Path(config.dataset.root) / "cifar-100-python" / "train").exists()

    @staticmethod
    def load(config, device) -> RawDataset:
        from src.data.cifar_files import CIFAR_MEAN_STD, load_cifar

        mean, std = CIFAR_MEAN_STD["cifar100"]
        root = config.dataset.root
        return image_dataset(load_cifar(root, "cifar100", train=True), load_cifar(root, "cifar100", train=False),
                             mean, std, cifar_augmentation, (32, 32, 3), device, num_classes=100)

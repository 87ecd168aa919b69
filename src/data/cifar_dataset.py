"""CIFAR-10 images: normalised with the reference's constants, random crop + flip augmentation."""

from __future__ import annotations

from pathlib import Path

import torch

from src.data.image_transforms import cifar_augmentation, normalise_images
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
        train_images, train_labels = load_cifar(config.dataset.root, "cifar10", train=True)
        test_images, test_labels = load_cifar(config.dataset.root, "cifar10", train=False)
        return RawDataset(
            train_x=normalise_images(train_images, mean, std, device),
            train_y=torch.as_tensor(train_labels, dtype=torch.long, device=device),
            test_x=normalise_images(test_images, mean, std, device),
            test_y=torch.as_tensor(test_labels, dtype=torch.long, device=device),
            num_classes=10,
            input_shape=(32, 32, 3),
            augmentation=cifar_augmentation(mean, std, device),
        )

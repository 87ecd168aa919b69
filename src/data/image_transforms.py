"""ToTensor + Normalize for whole arrays of uint8 images, and the augmentation that goes with them."""

from __future__ import annotations

import numpy as np
import torch

from src.data.batches import CifarAugmentation, MnistAugmentation
from src.data.raw import RawDataset


def normalise_images(images: np.ndarray, mean, std, device) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] -> float32 [N, C, H, W], (x / 255 - mean) / std.

    The whole array at once, on the device: what ToTensor and Normalize do per image.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return ((x.float() / 255.0) - mean_t) / std_t


def black_pixel(mean, std, device) -> torch.Tensor:
    """The normalised value of a zero pixel: what rotation and crop padding fill with."""
    return -torch.tensor(mean, dtype=torch.float32, device=device) / torch.tensor(std, dtype=torch.float32, device=device)


def mnist_augmentation(mean, std, device) -> MnistAugmentation:
    return MnistAugmentation(black_pixel(mean, std, device))


def cifar_augmentation(mean, std, device) -> CifarAugmentation:
    return CifarAugmentation(black_pixel(mean, std, device))


def image_dataset(train, test, mean, std, augmentation, input_shape, device, num_classes: int = 10) -> RawDataset:
    """Official train and test (images uint8, labels) -> normalised tensors on the device.
    `augmentation`: a maker of the training augmentation, or None for none."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    return RawDataset(
        train_x=normalise_images(train_images, mean, std, device),
        train_y=torch.as_tensor(train_labels, dtype=torch.long, device=device),
        test_x=normalise_images(test_images, mean, std, device),
        test_y=torch.as_tensor(test_labels, dtype=torch.long, device=device),
        num_classes=num_classes,
        input_shape=input_shape,
        augmentation=augmentation(mean, std, device) if augmentation is not None else None,
    )

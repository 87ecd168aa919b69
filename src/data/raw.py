"""What a dataset family hands to the split: the official train and test sets as tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RawDataset:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    augmentation: object | None = None

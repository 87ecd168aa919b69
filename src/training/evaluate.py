"""Loss and accuracy of a model over a whole split, as every phase measures them."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from src.data.base_datamodule import Split

EVAL_CHUNK = 2048


class Evaluator:
    """Sample-weighted loss and accuracy over a whole split (D17), in large chunks."""

    def __init__(self, model: FlatModel, augmentation=None, generator=None):
        self.model = model
        self.augmentation = augmentation
        self.generator = generator

    @torch.no_grad()
    def __call__(self, split: Split) -> tuple[float, float]:
        loss_sum = torch.zeros((), device=self.model.device)
        correct = torch.zeros((), device=self.model.device, dtype=torch.long)
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            if self.augmentation is not None:
                x = self.augmentation(x, self.generator)
            logits = self.model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        n = max(len(split), 1)
        return float(loss_sum) / n, float(correct) / n

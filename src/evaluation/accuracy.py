"""Top-1 accuracy on the four splits the forgetting metrics compare: forget, retain, val, test
(fractions in [0, 1]; the unlearning papers print percentages)."""

from __future__ import annotations

import numpy as np

SPLITS = ("forget", "retain", "val", "test")


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(1) == y).mean()) if len(y) else float("nan")


def split_accuracies(outputs: dict) -> dict:
    """{split: accuracy} from {split: (p, y)}."""
    return {split: accuracy(*outputs[split]) for split in SPLITS}

"""`worst_case`: the model of the audit's synthetic worst case (src/data/worst_case.py).

One weight vector w; for an input x the logits are [s |<w, x>|, K] with s = 100 and
K = 1,000. The cross-entropy of label 0 is then K - s |<w, x>| + log(1 + e^{s|<w,x>| - K}),
which for |<w, x>| well below K / s = 10 is -s |<w, x>| up to a constant and 1e-300: its
gradient -s sign(<w, x>) x has norm s ||x||, so any clip C1 < s cuts it to exactly C1,
pointing away from <w, x> = 0. Weights start at a small random point (at w = 0 the
gradient would be zero).
"""

from __future__ import annotations

import torch
from torch import nn

SLOPE = 100.0
OTHER_LOGIT = 1000.0


class WorstCaseModel(nn.Module):
    def __init__(self, num_features: int, generator=None):
        super().__init__()
        self.weight = nn.Parameter(1e-3 * torch.randn(num_features, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = SLOPE * (x.flatten(1) @ self.weight).abs()
        return torch.stack([z, torch.full_like(z, OTHER_LOGIT)], dim=1)


def worst_case(input_shape, num_classes: int, generator=None) -> nn.Module:
    if num_classes != 2:
        raise ValueError(f"worst_case has 2 classes, not {num_classes}")
    features = 1
    for n in input_shape:
        features *= n
    return WorstCaseModel(features, generator)

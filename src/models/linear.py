"""`linear`: logistic regression (2 classes) or softmax regression on fixed features.

The convex models of Langevin unlearning (Chien et al. 2024): no bias, no hidden layer.
With two classes the parameter is one vector w and the logits are [0, w.x], so the
framework's cross-entropy is exactly the logistic loss log(1 + exp(-y w.x)) with
y = +1 for class 1 and -1 for class 0, and argmax predicts class 1 when w.x > 0.
With C > 2 classes, W is C x d and the logits are W x. Weights start at zero (the
objective is convex; Langevin training draws its own initial point).

The constants the certificate needs, for inputs with ||x|| <= 1 (`smoothness_bound`,
`gradient_bound`): the logistic loss has Hessian <= x x^T / 4 and gradient norm <= ||x||;
the softmax cross-entropy has Hessian <= (1/2) ||x||^2 (Bohning's bound) and gradient
x (p - e_y)^T of norm <= sqrt(2) ||x||.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LogisticRegression(nn.Module):
    def __init__(self, num_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.weight
        return torch.stack([torch.zeros_like(z), z], dim=1)


class SoftmaxRegression(nn.Module):
    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t()


def linear(input_shape, num_classes, generator=None):
    num_features = math.prod(input_shape)
    if num_classes == 2:
        return LogisticRegression(num_features)
    return SoftmaxRegression(num_features, num_classes)


def smoothness_bound(num_classes: int, max_norm: float = 1.0) -> float:
    """L of the data term (the l2 term adds m): 1/4 (logistic), 1/2 (softmax), times ||x||^2."""
    return (0.25 if num_classes == 2 else 0.5) * max_norm**2


def gradient_bound(num_classes: int, max_norm: float = 1.0) -> float:
    """M, the largest per-example gradient norm of the data term: 1 (logistic), sqrt(2) (softmax), times ||x||."""
    return (1.0 if num_classes == 2 else math.sqrt(2.0)) * max_norm

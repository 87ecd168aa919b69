"""`compat.langevin_clipping: upstream`: the gradient of the original Langevin code's binary
chain (Chien et al. 2024, `Graph-COM/Langevin_unlearning`), for reproducing its numbers.

The original clipped every per-example gradient *including the l2 term*,

    g = mean_i clip_M( grad l_i(w) + m w ),    clip_M(v) = v min(1, M / ||v||),

where the framework (and the theory) clips nothing: M bounds the data term's gradient on
unit-norm inputs, and the l2 term is added outside. Far from the origin ||m w|| alone
passes M, so nearly every gradient is clipped: the restoring force of the l2 term is
capped, the chain wanders further out (larger weight norms) and its accuracy drops at
large temperatures (docs/langevin.md). The update is then not the gradient of a strongly
convex function, so no certificate covers it: runs under this switch are marked invalid.
Binary (logistic) only: the original's multi-class code added the l2 term after clipping.
"""

from __future__ import annotations

import torch

CHOICES = ("none", "upstream")


def upstream_clipped_grad(model, parts, m: float, M: float, theta: torch.Tensor | None = None):
    """(mean loss of the data term, number correct, mean of the clipped regularised
    per-example gradients), in the shape of `objective_grad`'s answer."""
    theta = model.theta if theta is None else theta
    w = theta.detach()
    total = sum(int(y.shape[0]) for _, y in parts)
    loss = torch.zeros((), dtype=w.dtype, device=w.device)
    correct = torch.zeros((), dtype=torch.long, device=w.device)
    grad = torch.zeros_like(w)
    for x, y in parts:
        if y.shape[0] == 0:
            continue
        x = x.flatten(1)
        s = 2.0 * y.to(w.dtype) - 1.0  # +1 for class 1, -1 for class 0
        margin = s * (x @ w)
        loss = loss + torch.nn.functional.softplus(-margin).sum() / total
        correct = correct + ((x @ w > 0).long() == y).sum()
        # per example: (sigmoid(s z) - 1) s x + m w, then clipped to norm M
        per_example = ((torch.sigmoid(margin) - 1.0) * s).unsqueeze(1) * x + m * w
        norms = torch.linalg.vector_norm(per_example, dim=1, keepdim=True)
        per_example = per_example * torch.clamp(M / norms, max=1.0)
        grad = grad + per_example.sum(0) / total
    return loss, correct, grad

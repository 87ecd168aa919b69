"""Gradient saliency masks (SalUn, Fan et al. 2024; used by Sharp MinMax): which parameters
an unlearning method may move.

The saliency of parameter j is |g_j|, g the sum over the forget batches (fixed order, no
augmentation, the trained model) of the batch-mean gradient of the forget loss. The mask keeps
floor(ratio * d) parameters: those with the LARGEST saliency, as the SalUn paper defines it
and SalUn's code does since its fix of 2024-05-15; `smallest` reproduces the code RUM and
sharp-unlearn inherited from before that fix (ascending rank < floor(ratio * d)).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from src.data.batches import num_batches
from src.training.ensemble import member_total


def saliency_mask(saliency: torch.Tensor, ratio: float, select: str = "largest") -> torch.Tensor:
    """A boolean mask over `saliency` (one value per parameter) with floor(ratio * d) entries
    set: the largest values (`largest`) or the smallest (`smallest`); ties by index. An
    ensemble's saliency [N, d] gets one mask per member (per row)."""
    if select not in ("largest", "smallest"):
        raise ValueError(f"mask_select must be 'largest' or 'smallest', got {select!r}")
    k = int(ratio * saliency.shape[-1])
    order = torch.argsort(saliency, dim=-1, stable=True, descending=select == "largest")
    mask = torch.zeros(saliency.shape, dtype=torch.bool, device=saliency.device)
    mask.scatter_(-1, order[..., :k], True)
    return mask


def forget_saliency(model, forget, batch_size: int, optimizer=None, cross_entropy=None) -> torch.Tensor:
    """|sum over forget batches of grad CE(B_f)| at the model's current parameters (the sign
    of the loss does not matter after the absolute value). `cross_entropy(x, y)` computes
    CE(B_f) when given: an ensemble's (src/unlearning/empirical.py), one per member, whose
    saliency [N, d] is then each member's own.

    `optimizer` (compat.saliency_mask: sgd_steps): as RUM's and sharp-unlearn's
    generate_mask.py, a step on the gradient of -CE(B_f) after each batch, so each batch's
    gradient is taken where the previous steps left the model; the model is put back after."""
    theta = model.theta
    if cross_entropy is None:
        def cross_entropy(x, y):
            return F.cross_entropy(model(x), y)
    total = torch.zeros_like(theta)
    saved = theta.detach().clone() if optimizer is not None else None
    with torch.enable_grad():
        for b in range(num_batches(len(forget), batch_size)):
            x, y = forget.x[b * batch_size:(b + 1) * batch_size], forget.y[b * batch_size:(b + 1) * batch_size]
            (g,) = torch.autograd.grad(member_total(cross_entropy(x, y)), theta)
            total += g
            if optimizer is not None:
                theta.grad = -g
                optimizer.step()
                theta.grad = None
    if saved is not None:
        with torch.no_grad():
            theta.copy_(saved)
    return total.abs()

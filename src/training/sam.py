"""Sharpness-aware gradients (SAM, Foret et al. 2021; ASAM, Kwon et al. 2021) with the sign
switch of Sharp MinMax (Tang & Khanna): the gradient an optimizer step then uses.

At theta with gradient g of the loss L:
    eps   = rho * T^2 g / ||T g||          T = diag(|theta|) if adaptive, else I
    g_adv = grad L(theta + eps)
    g_hat = g + s * lamb * (g_adv - g)     s = +1 (min) or -1 (max)
s = +1, lamb = 1 is standard SAM (g_hat = g_adv). s = -1 is a first-order step on
L(theta) - lamb (L(theta + eps) - L(theta)): it rewards a sharp neighbourhood. The
perturbation always ascends, for both signs; the norm is global over theta and 1e-12 keeps it
finite at g = 0. Two gradient evaluations per step.

An ensemble (theta [N, d], src/training/ensemble.py) gives one loss per member: the
gradient is that of their sum (each row a member's own), and the norm is per member (over
the last dimension), so each row is perturbed as its single run would be.
"""

from __future__ import annotations

from typing import Callable

import torch

from src.training.ensemble import member_total

NORM_FLOOR = 1e-12


def sam_perturbation(theta: torch.Tensor, grad: torch.Tensor, rho: float, adaptive: bool) -> torch.Tensor:
    if adaptive:
        scale = theta.detach().abs()
        return rho * scale.pow(2) * grad / (row_norm(scale * grad) + NORM_FLOOR)
    return rho * grad / (row_norm(grad) + NORM_FLOOR)


def row_norm(v: torch.Tensor) -> torch.Tensor:
    """||v|| of a single run's vector; of each member's row of an ensemble's [N, d]."""
    return torch.linalg.vector_norm(v) if v.dim() == 1 else torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def sam_gradient(loss_fn: Callable[[], tuple[torch.Tensor, object]], theta: torch.Tensor, sam, adv_mask=None):
    """(loss, aux, g_hat) for `loss_fn()` -> (loss, aux) evaluated at `theta`; `sam` a
    SAMConfig, or None for the plain gradient. theta is restored exactly afterwards; loss and
    aux are those at theta itself. `adv_mask` multiplies g_adv alone (sharp-unlearn's masked
    SAM step, compat.sharp_minmax_mask: perturbed_only)."""
    loss, aux = loss_fn()
    (grad,) = torch.autograd.grad(member_total(loss), theta)
    if sam is None:
        return loss.detach(), aux, grad
    saved = theta.detach().clone()
    with torch.no_grad():
        theta.add_(sam_perturbation(theta, grad, sam.rho, sam.adaptive))
    adv_loss, _ = loss_fn()
    (adv_grad,) = torch.autograd.grad(member_total(adv_loss), theta)
    with torch.no_grad():
        theta.copy_(saved)
    sign = 1.0 if sam.sign == "min" else -1.0
    if adv_mask is not None:
        adv_grad = adv_grad * adv_mask
    return loss.detach(), aux, grad + sign * sam.lamb * (adv_grad - grad)

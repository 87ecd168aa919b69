"""Influence unlearning (IU; Koh & Liang; the WoodFisher variant of Jia et al. used by SalUn,
RUM and sharp-unlearn): one Newton-like step away from the forget set, no optimizer.

At the trained model theta_o, with per-example gradients g_i, n = n_f + n_r:

    v     = (1/n) sum_{D_f} g_i - n_f / (n n_r) sum_{D_r} g_i     (= (n_f/n)(mean_f - mean_r))
    k     ~ N (N I + sum_{j<=m} g_j g_j^T)^{-1} v                 (m retain examples, in order)
    theta = theta_o + alpha * k

`solver`:
* `woodfisher_heuristic`: upstream's rank-one recursion (k = v, o = g_1; for each later g_j,
  t = o.g_j, k -= (k.g_j / (N + t)) o, o -= (t / (N + t)) o), which is not the exact
  Woodbury recursion;
* `exact`: that inverse exactly, by the Woodbury identity (an m x m solve, any d);
* `cg`: the same system by scipy's conjugate gradients, matrix-free.
`damping_N` is N; `alpha` the step scale (RUM tunes it in [1, 100]). The update is the first
epoch of the budget; any later epochs fine-tune (the trainer's post phase), so `unlearning.epochs:
1` is IU alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from src.config import FiniteFloat, Section
from src.training.ensemble import member_total
from src.unlearning.base import EpochResult
from src.unlearning.empirical import EmpiricalUnlearning, example_cross_entropy, mean_cross_entropy

CHUNK = 256


class InfluenceConfig(Section):
    """`unlearning.influence:`"""

    alpha: FiniteFloat = Field(10.0, gt=0)
    solver: Literal["woodfisher_heuristic", "exact", "cg"] = "woodfisher_heuristic"
    n_fisher_samples: int = Field(1000, gt=0)
    damping_N: FiniteFloat = Field(1000.0, gt=0)
    cg_tolerance: FiniteFloat = Field(1e-8, gt=0)


def gradient_sum(logits_of, theta, split) -> tuple[torch.Tensor, object, object]:
    """(sum of the per-example gradients, i.e. the gradient of the summed loss; sum of
    losses; number correct) over a split, in chunks, for the logits `logits_of(x)` at
    theta. An ensemble's theta [c, d] gives one of each per member ([c, d], [c], [c])."""
    total = torch.zeros_like(theta, dtype=torch.float64)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(split), CHUNK):
        x, y = split.x[start:start + CHUNK], split.y[start:start + CHUNK]
        logits = logits_of(x)
        loss = summed_cross_entropy(logits, y)
        (g,) = torch.autograd.grad(member_total(loss), theta)
        total += g.double()
        if loss.dim():  # an ensemble: per member, summed as the single run sums
            loss_sum = loss_sum + loss.detach().double().cpu().numpy()
            correct = correct + (logits.detach().argmax(-1) == y).sum(-1).cpu().numpy()
        else:
            loss_sum += float(loss.detach())
            correct += int((logits.detach().argmax(1) == y).sum())
    return total, loss_sum, correct


def summed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, reduction="sum")
    return example_cross_entropy(logits, y).sum(-1)


def example_gradients(logits_of, theta, x, y) -> torch.Tensor:
    """[m, d] gradients of single examples, one backward pass each (plain autograd: the
    functorch transforms import torch._dynamo, seconds per process); an ensemble's
    [c, m, d], every member's gradients of one example from one backward pass."""
    rows = [torch.autograd.grad(member_total(mean_cross_entropy(logits_of(x[i:i + 1]), y[i:i + 1])), theta)[0]
            for i in range(len(y))]
    return torch.stack(rows, dim=theta.dim() - 1).double()


def woodfisher_heuristic(v: torch.Tensor, grads: torch.Tensor, damping: float) -> torch.Tensor:
    k, o = v.clone(), grads[0].clone()
    for g in grads[1:]:
        t = o @ g
        k -= (k @ g) / (damping + t) * o
        o -= t / (damping + t) * o
    return k


def woodbury_solve(v: torch.Tensor, grads: torch.Tensor, damping: float) -> torch.Tensor:
    """N (N I + G^T G)^{-1} v = v - G^T (N I_m + G G^T)^{-1} G v."""
    gram = grads @ grads.T + damping * torch.eye(grads.shape[0], dtype=grads.dtype, device=grads.device)
    return v - grads.T @ torch.linalg.solve(gram, grads @ v)


def cg_solve(v: torch.Tensor, grads: torch.Tensor, damping: float, tolerance: float) -> torch.Tensor:
    from scipy.sparse.linalg import LinearOperator, cg

    G = grads.cpu().numpy()
    d = G.shape[1]
    operator = LinearOperator((d, d), matvec=lambda u: damping * u + G.T @ (G @ u), dtype=np.float64)
    solution, info = cg(operator, damping * v.cpu().numpy(), rtol=tolerance, atol=0.0, maxiter=10 * d)
    if info != 0:
        raise RuntimeError(f"conjugate gradients did not converge in {10 * d} iterations (info {info})")
    return torch.from_numpy(solution).to(v.device)


SOLVERS = {"woodfisher_heuristic": woodfisher_heuristic, "exact": woodbury_solve}


def influence_direction(logits_of, theta, forget, retain, cfg) -> tuple[torch.Tensor, dict]:
    """k for the parameters theta (the logits `logits_of(x)`), and what computing it measured.
    An ensemble's theta [c, d] gives each member's k [c, d], from its own gradients and
    Fisher samples, each solved as its single run solves it."""
    n_f, n_r = len(forget), len(retain)
    n = n_f + n_r
    g_f, _, _ = gradient_sum(logits_of, theta, forget)
    g_r, retain_loss, retain_correct = gradient_sum(logits_of, theta, retain)
    v = g_f / n - n_f / (n * n_r) * g_r
    m = min(cfg.n_fisher_samples, n_r)
    grads = example_gradients(logits_of, theta, retain.x[:m], retain.y[:m])
    if cfg.solver == "cg":
        solve = lambda v, grads: cg_solve(v, grads, cfg.damping_N, cfg.cg_tolerance)  # noqa: E731
    else:
        solve = lambda v, grads: SOLVERS[cfg.solver](v, grads, cfg.damping_N)  # noqa: E731
    k = solve(v, grads) if theta.dim() == 1 else torch.stack([solve(*member) for member in zip(v, grads)])
    return k, {"examples": n + m, "retain_loss": retain_loss / n_r, "retain_accuracy": retain_correct / n_r}


def member_chunk(members: int, m: int, d: int) -> int:
    """Members whose Fisher samples ([chunk, m, d] in float64) fit in 512 MiB together."""
    return max(1, min(members, (512 << 20) // max(1, m * d * 8)))


class Influence(EmpiricalUnlearning):
    name = "influence"
    vectorised = True  # members as one theta [N, d], in chunks of members (tests/test_members.py)
    section = InfluenceConfig
    section_default = InfluenceConfig()
    accepts_sam = False  # no gradient steps to sharpen

    def unlearn_epoch(self, model, epoch: int, log) -> EpochResult:
        cfg = self.config.unlearning.influence
        with torch.enable_grad():
            if self.ensemble:
                k, measured = self.member_directions(model, cfg)
            else:
                k, measured = influence_direction(model, model.theta, self.data.forget, self.data.retain, cfg)
        with torch.no_grad():
            model.theta.add_((cfg.alpha * k).to(model.theta.dtype))
        step_norm = cfg.alpha * k.norm(dim=-1)
        log({"influence_step_norm": float(step_norm) if step_norm.dim() == 0 else step_norm.cpu().numpy()})
        self.finished = True
        return EpochResult(measured["retain_loss"], measured["retain_accuracy"], measured["examples"])

    def member_directions(self, model, cfg) -> tuple[torch.Tensor, dict]:
        """Every member's k [N, d], a chunk of members at a time (their Fisher samples)."""
        n = model.members
        chunk = member_chunk(n, min(cfg.n_fisher_samples, len(self.data.retain)), model.num_parameters)
        directions, measured = [], []
        for start in range(0, n, chunk):
            theta = model.theta.detach()[start:start + chunk].clone().requires_grad_(True)
            c = theta.shape[0]
            k, found = influence_direction(lambda x: model(x.expand(c, *x.shape), theta), theta,
                                           self.data.forget, self.data.retain, cfg)
            directions.append(k)
            measured.append(found)
        return torch.cat(directions), {
            "examples": measured[0]["examples"],
            "retain_loss": np.concatenate([found["retain_loss"] for found in measured]),
            "retain_accuracy": np.concatenate([found["retain_accuracy"] for found in measured])}

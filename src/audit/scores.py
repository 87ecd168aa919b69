"""What the audit measures on each chain's output theta (the end of its noisy phase).

The pre-registered family (`FAMILY`), the only scores the lower bound chooses among:
  * `projection`: <theta - (a + b) / 2, (a - b) / ||a - b||>, the output along the
    direction in which the two worlds' starting points a and b differ, a and b taken
    after the initial projection (where the noisy phase starts: worlds.projected);
  * `forget_loss`: theta's mean cross-entropy on the forget set;
  * `mean_margin`: the mean over forget examples of margin[j] below.
Per forget example j (reported, and read by closeness to retrain, never chosen among:
choosing among hundreds of them drowns the projection's signal in selection noise):
  * `margin[j]`: the logit-scaled confidence of its label, log p_y - log(1 - p_y) =
    z_y - logsumexp_{k != y} z_k (the NeurIPS 2023 unlearning challenge's score, LiRA's
    transform).
Every score is a fixed function of one output, so any of them, thresholded, is a test
between the worlds; which of the family is used is chosen on held-out chains (bounds.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from src.data.base_datamodule import Split
from src.training.ensemble import EnsembleModel
from src.training.flat_model import FlatModel

FAMILY = ("projection", "forget_loss", "mean_margin")


def score_names(forget_indices) -> list[str]:
    """Column names; a margin is named by its example's index in the official train split."""
    return [*FAMILY, *(f"margin[{int(i)}]" for i in forget_indices)]


def direction(start_a: torch.Tensor, start_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit vector from b to a (zero when they coincide) and their midpoint."""
    diff = (start_a - start_b).double()
    norm = torch.linalg.vector_norm(diff)
    unit = diff / norm if norm > 0 else torch.zeros_like(diff)
    return unit, (start_a.double() + start_b.double()) / 2


@torch.no_grad()
def chain_scores(network: FlatModel, outputs: torch.Tensor, start_a: torch.Tensor, start_b: torch.Tensor,
                 forget: Split, chunk: int = 256) -> np.ndarray:
    """[chains, 3 + forget examples] scores of the outputs [chains, d]: the family, then
    the margins. `start_a`, `start_b`: where the two worlds' noisy phases start."""
    unit, middle = direction(start_a.to(outputs.device), start_b.to(outputs.device))
    rows = []
    for start in range(0, outputs.shape[0], chunk):
        theta = outputs[start:start + chunk].to(network.device)
        projection = (theta.double() - middle.to(theta.device)) @ unit.to(theta.device)
        model = EnsembleModel(network, theta, chunk=theta.shape[0])
        logits = model.logits(forget.x).double()  # [chains, n, classes]
        labels = forget.y.expand(logits.shape[0], -1)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.reshape(-1), reduction="none").view(labels.shape).mean(1)
        own = logits.gather(2, labels.unsqueeze(2)).squeeze(2)
        others = logits.scatter(2, labels.unsqueeze(2), float("-inf")).logsumexp(2)
        margins = own - others
        rows.append(torch.cat([projection[:, None], loss[:, None], margins.mean(1, keepdim=True), margins],
                              dim=1).cpu())
    return torch.cat(rows).numpy()


def summary(scores_a: np.ndarray, scores_b: np.ndarray, names: list[str]) -> dict:
    """Mean and standard deviation of the family's scores, and of the margins pooled over
    examples, in each world."""
    out = {}
    for j, name in enumerate(FAMILY):
        out[name] = {"A_mean": float(scores_a[:, j].mean()), "A_std": float(scores_a[:, j].std()),
                     "B_mean": float(scores_b[:, j].mean()), "B_std": float(scores_b[:, j].std())}
    k = len(FAMILY)
    if scores_a.shape[1] > k:
        gaps = np.abs(scores_a[:, k:].mean(0) - scores_b[:, k:].mean(0)) / \
            np.sqrt((scores_a[:, k:].var(0) + scores_b[:, k:].var(0)) / 2 + 1e-30)
        widest = int(np.argmax(gaps)) + k
        out["margin"] = {"A_mean": float(scores_a[:, k:].mean()), "B_mean": float(scores_b[:, k:].mean()),
                         "examples": scores_a.shape[1] - k, "most_separated": names[widest],
                         "most_separated_standardised_gap": float(gaps.max())}
    return out

"""The variance-based entanglement score of sharp-unlearn's analysis (`analysis.py`, after
RUM): how mixed the forget and retain sets are in the model's penultimate embedding space,
the embeddings L2-normalised,

    ES = [mean_r ||e_r - mu_R||^2 + mean_f ||e_f - mu_F||^2] / [(||mu_R - mu||^2 + ||mu_F - mu||^2) / 2]

mu_R, mu_F the means of the retain and forget embeddings, mu the mean of both sets
together. Within-set spread over between-set separation: high means entangled (the forget
set sits among the retain set), which RUM found harder to unlearn. `normalised` is the
reference's min-max scaling with its hard-coded maximum of 1300, clipped to [0, 1]. The
class-wise score computes ES within each class present in both sets and averages them
weighted by the class's number of examples (retain plus forget).

For grouping a forget set (RUM `group_by: entanglement`) each forget example gets its own
term of the within-set spread, the squared distance of its embedding to the mean retain
embedding of its class: far from its class means it stands apart from what the model
learnt of that class (the memorised end), near means entangled.
"""

from __future__ import annotations

import numpy as np

REFERENCE_MAX = 1300.0


def normalise_rows(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(norms > 0, norms, 1.0)


def entanglement_score(retain: np.ndarray, forget: np.ndarray) -> float:
    """ES of two sets of (already normalised) embeddings; inf when the means coincide."""
    retain, forget = np.asarray(retain, dtype=np.float64), np.asarray(forget, dtype=np.float64)
    mu_r, mu_f = retain.mean(0), forget.mean(0)
    mu = np.concatenate([retain, forget]).mean(0)
    within = np.mean(np.sum((retain - mu_r) ** 2, 1)) + np.mean(np.sum((forget - mu_f) ** 2, 1))
    between = 0.5 * (np.sum((mu_r - mu) ** 2) + np.sum((mu_f - mu) ** 2))
    return float(within / between) if between > 0 else float("inf")


def classwise_entanglement(retain, retain_y, forget, forget_y) -> float:
    """ES per class present in both sets, averaged weighted by the class's examples."""
    total, weight = 0.0, 0
    for c in np.intersect1d(np.unique(retain_y), np.unique(forget_y)):
        r, f = retain[retain_y == c], forget[forget_y == c]
        score = entanglement_score(r, f)
        if np.isfinite(score):
            total += score * (len(r) + len(f))
            weight += len(r) + len(f)
    return total / weight if weight else float("nan")


def normalised(score: float) -> float:
    """The reference's min-max scaling (maximum 1300), clipped to [0, 1]."""
    return float(np.clip(score / REFERENCE_MAX, 0.0, 1.0))


def example_distances(retain, retain_y, forget, forget_y) -> np.ndarray:
    """Each forget example's squared distance to the mean retain embedding of its class
    (to the mean of all retain embeddings when its class has none)."""
    retain, forget = np.asarray(retain, dtype=np.float64), np.asarray(forget, dtype=np.float64)
    overall = retain.mean(0)
    means = {int(c): retain[retain_y == c].mean(0) for c in np.unique(retain_y)}
    centre = np.stack([means.get(int(c), overall) for c in forget_y])
    return np.sum((forget - centre) ** 2, 1)


def penultimate_embeddings(model, split, chunk: int = 2048) -> np.ndarray:
    """The input of the network's last linear layer for every example of `split`, L2-normalised."""
    import torch
    from torch import nn

    last = [m for m in model.module.modules() if isinstance(m, nn.Linear)][-1]
    seen = []
    handle = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(split), chunk):
                model(split.x[start:start + chunk])
    finally:
        handle.remove()
    e = torch.cat(seen).flatten(1).double().cpu().numpy() if seen else np.zeros((0, 0))
    return normalise_rows(e)


def entanglement_report(model, retain, forget) -> dict:
    """The logged diagnostic: global and class-wise ES, raw and normalised."""
    er, ef = penultimate_embeddings(model, retain), penultimate_embeddings(model, forget)
    yr, yf = retain.y.cpu().numpy(), forget.y.cpu().numpy()
    g, c = entanglement_score(er, ef), classwise_entanglement(er, yr, ef, yf)
    return {"entanglement": g, "entanglement_normalised": normalised(g), "entanglement_classwise": c,
            "entanglement_classwise_normalised": normalised(c)}

"""Per-example features of a model's softmax output p and label y, the inputs of the
membership-inference attacks (Song & Mittal 2021; SalUn's SVC_MIA).

    correctness  1[argmax p = y]        confidence  p_y          loss  -log p_y
    entropy      -sum_c p_c log p_c     prob        the vector p
    m_entropy    -(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c)      (Song & Mittal)

`legacy_m_entropy` is what SalUn's SVC_MIA.py (and its forks, RUM and sharp-unlearn among
them) computes under that name: it indexes the columns with the whole label vector and takes
log p where log(1 - p) belongs, giving -sum_{c in L} (1 - p_c) log p_c - sum_{c not in L} p_c log p_c,
L the set of labels present in the evaluated set: the same value for every label a row could have.
Logarithms of 0 are taken at 1e-30, as upstream.
"""

from __future__ import annotations

import numpy as np

TINY = 1e-30


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(x, TINY))


def softmax_outputs(model, split, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(p [n, C] float64, y [n]) of the model on a split, without augmentation."""
    import torch  # here: the figures read these modules without torch

    probs = []
    with torch.no_grad():
        for start in range(0, len(split), chunk):
            probs.append(torch.softmax(model(split.x[start:start + chunk]).double(), dim=1).cpu())
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0))
    return p, split.y.cpu().numpy()


def confidence(p, y):
    return p[np.arange(len(y)), y]


def correctness(p, y):
    return (p.argmax(1) == y).astype(np.float64)


def loss(p, y):
    return -_log(confidence(p, y))


def entropy(p, y=None):
    return -np.sum(np.where(p > 0, p * _log(p), 0.0), axis=1)


def modified_entropy(p, y):
    rows = np.arange(len(y))
    p_y = p[rows, y]
    others = p * _log(1 - p)
    others[rows, y] = 0.0
    return -(1 - p_y) * _log(p_y) - others.sum(1)


def legacy_m_entropy(p, y):
    present = np.zeros(p.shape[1], dtype=bool)
    present[np.unique(y)] = True
    weight = np.where(present, 1 - p, p)
    return -np.sum(weight * _log(p), axis=1)


SCALAR = {"correctness": correctness, "confidence": confidence, "entropy": entropy, "m_entropy": modified_entropy,
          "loss": loss}


def feature(name: str, p: np.ndarray, y: np.ndarray, legacy_m_entropy_: bool = False) -> np.ndarray:
    """[n, k] attack inputs: k = 1 for the scalar features, C for `prob`."""
    if name == "prob":
        return p
    if name == "m_entropy" and legacy_m_entropy_:
        return legacy_m_entropy(p, y)[:, None]
    return SCALAR[name](p, y)[:, None]

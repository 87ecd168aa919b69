"""Memorization proxies (RUM, Zhao et al.; `memorization_proxy/` of its code): cheap stand-ins
for the memorization score, each computed where the reference computes it.

* Learning events (`learning_events.py`), recorded during pretraining at no extra cost:
  at every training step the logits of the batch's forward pass (before the update, on the
  augmented inputs the step trains on) give, per example, the true-class softmax confidence,
  the max softmax probability, the negative entropy and the 0/1 correctness. Each proxy is
  the mean of one of them over the epochs: `confidence`, `max_conf`, `entropy`, `bi_acc`.
  They are kept beside the pretrained model in the cache (learning_events.npz). A high
  value means LOW memorization, so a score (high = memorized) is the negated mean.
* Hold-out retraining (`heldout_retrain.py`, `ho_ret`): a copy of the pretrained model is
  fine-tuned on a held-out split (SGD, lr 0.1, up to 30 epochs, stopping after 4 epochs
  without improvement of the epoch's mean loss), and each training example's score is the
  symmetric KL between the two models' softmax outputs, (KL(p||q) + KL(q||p)) / 2.
* Input-space loss curvature (`loss_curvature.py`, CURE-style): ||grad_x l(x + h z) -
  grad_x l(x)|| with z the sign of the input gradient, normalised, and h = 0.01.

Every `proxy_scores` value is oriented as memorization: high = more memorized.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from src.data.forget_groups import LEARNING_EVENTS, PROXIES  # noqa: F401  (the proxies' names)
from src.training.algorithm import records_learning_events

EVENTS_FILE = "learning_events.npz"


class LearningEvents:
    """Per-example sums of the four learning events over the steps that trained on it."""

    def __init__(self, n: int, device):
        self.sums = torch.zeros(4, n, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n, dtype=torch.float64, device=device)

    @torch.no_grad()
    def record(self, idx: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        log_p = torch.log_softmax(logits.detach().double(), 1)
        p = log_p.exp()
        events = torch.stack([p.gather(1, y[:, None]).squeeze(1), p.max(1).values, (p * log_p).sum(1),
                              (p.argmax(1) == y).double()])
        self.sums.index_add_(1, idx, events)
        self.counts.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))

    def means(self) -> dict[str, np.ndarray]:
        counts = self.counts.clamp(min=1).cpu().numpy()
        sums = self.sums.cpu().numpy()
        return {name: sums[i] / counts for i, name in enumerate(LEARNING_EVENTS)} | {
            "epochs_seen": self.counts.cpu().numpy()}


def symmetric_kl(p: np.ndarray, q: np.ndarray, tiny: float = 1e-30) -> np.ndarray:
    """(KL(p||q) + KL(q||p)) / 2 per row of two [n, C] arrays of probabilities."""
    p = np.maximum(np.asarray(p, dtype=np.float64), tiny)
    q = np.maximum(np.asarray(q, dtype=np.float64), tiny)
    return 0.5 * (np.sum(p * (np.log(p) - np.log(q)), 1) + np.sum(q * (np.log(q) - np.log(p)), 1))


def holdout_finetune(model, heldout, batch_size: int, generator, lr: float = 0.1, max_epochs: int = 30,
                     patience: int = 4) -> int:
    """Fine-tune `model` in place on `heldout` with SGD (no momentum), stopping after
    `patience` epochs without a lower mean loss; returns the epochs run."""
    from src.data.batches import shuffled_batches

    theta = model.theta
    best, stale = float("inf"), 0
    for epoch in range(1, max_epochs + 1):
        total = 0.0
        for idx in shuffled_batches(len(heldout), batch_size, generator, heldout.y.device):
            with torch.enable_grad():
                loss = F.cross_entropy(model(heldout.x[idx]), heldout.y[idx])
                (grad,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                theta.sub_(lr * grad)
            total += float(loss.detach()) * idx.shape[0]
        mean = total / len(heldout)
        if mean < best:
            best, stale = mean, 0
        else:
            stale += 1
            if stale >= patience:
                return epoch
    return max_epochs


def input_curvature(loss_fn, x: torch.Tensor, h: float = 0.01) -> torch.Tensor:
    """||grad_x l(x + h z) - grad_x l(x)|| per example, z = sign(grad_x l(x)) / ||sign(...)||;
    `loss_fn(x)` returns one loss per example (independent examples, so the gradient of the
    sum is each example's own)."""
    def grad_at(points):
        points = points.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(loss_fn(points).sum(), points)
        return g

    g = grad_at(x)
    z = torch.sign(g).flatten(1)
    z = z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)
    moved = grad_at(x + h * z.view_as(x))
    return (moved - g).flatten(1).norm(dim=1)


def curvature_scores(model, split, h: float = 0.01, chunk: int = 512) -> np.ndarray:
    out = []
    for start in range(0, len(split), chunk):
        x, y = split.x[start:start + chunk], split.y[start:start + chunk]
        out.append(input_curvature(lambda points: F.cross_entropy(model(points), y, reduction="none"), x, h))
    return torch.cat(out).double().cpu().numpy()


def softmax(model, split) -> np.ndarray:
    from src.evaluation.features import softmax_outputs

    return softmax_outputs(model, split)[0]


def holdout_kl_scores(model, train, heldout, batch_size: int, seed: int) -> np.ndarray:
    """Symmetric KL between the model and a copy fine-tuned on `heldout`, per train example."""
    from src.data.batches import make_generator

    p = softmax(model, train)
    original = model.theta.detach().clone()
    try:
        holdout_finetune(model, heldout, batch_size, make_generator(seed, heldout.y.device))
        q = softmax(model, train)
    finally:
        with torch.no_grad():
            model.theta.copy_(original)
    return symmetric_kl(p, q)


# -- kept with the pretrained model ----------------------------------------------------------


def save_learning_events(entry, events: LearningEvents, train_indices: torch.Tensor) -> None:
    """Into the pretrained model's cache entry, before model.pt marks the entry complete;
    serialised in memory and written as checkpoints are (tracking.write_bytes_atomic), so
    that a full disk raises OSError with the path and leaves no partial file."""
    import io
    from pathlib import Path

    from src.tracking import write_bytes_atomic

    path = Path(entry) / EVENTS_FILE
    buffer = io.BytesIO()
    np.savez(buffer, train_indices=train_indices.cpu().numpy(), **events.means())
    write_bytes_atomic(path, buffer.getvalue())


def load_learning_events(config, train_indices: torch.Tensor) -> dict[str, np.ndarray]:
    from src.config import pretrained_key
    from src.errors import UserError
    from src.training.checkpoints import PretrainedCache

    if config.training.pretrained != "auto" or not records_learning_events(config):
        raise UserError("unlearning.rum.group_by: the learning-event proxies are recorded while the pretrained "
                        "model trains, so they need training.pretrained: auto with SGD training (not DP-SGD, "
                        f"Langevin or pnsgd, not release mode); got training.pretrained: {config.training.pretrained!r} "
                        f"with {config.training.method} training")
    entry = PretrainedCache(config.checkpoints_dir).entry(pretrained_key(config))
    path = entry / EVENTS_FILE
    if not path.is_file():
        raise UserError(f"{path}: no learning events beside this cached model (it was trained before they were "
                        f"recorded); delete {entry} to train it again")
    with np.load(path) as cached:
        if not np.array_equal(cached["train_indices"], train_indices.cpu().numpy()):
            raise UserError(f"{path}: learning events of another train split; delete {entry}")
        return {name: cached[name] for name in cached.files}


def proxy_scores(name: str, config, data, model) -> np.ndarray:
    """One score per train-split example (in its order), high = more memorized."""
    if name in LEARNING_EVENTS:
        return -load_learning_events(config, data.indices.train)[name]
    if name == "holdout_kl":
        from src.seeds import derive_seed

        return holdout_kl_scores(model, data.train, data.val, config.dataset.batch_size,
                                 derive_seed(config.global_seed, "holdout-retrain"))
    if name == "curvature":
        return curvature_scores(model, data.train)
    raise ValueError(f"unknown proxy {name!r}; known: {', '.join(PROXIES)}")

"""Memorization scores estimated by subsampling (Feldman & Zhang 2020):

    mem(i) = P[h(x_i) = y_i | i in S] - P[h(x_i) = y_i | i not in S],

each probability the fraction of K models, trained on random subsets S (a fraction of the
train split each), that classify example i correctly. The K models are trained together as
one [K, d] parameter matrix (vmap over the network's forward), with `model:` and the
optimizer of `training:`, for `dataset.forget.memorization.subsample.epochs`.

The scores depend on the dataset split and this recipe only (not on global_seed), so every
run of one dataset seed gets the same forget set. They are cached in
<checkpoints_dir>/memorization/<key>.npz, computed once under a file lock even when several
runs ask at the same moment.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.func import vmap

from src.config import model_label, stable_hash, user_files_by_content
from src.data.batches import make_generator
from src.errors import UserError
from src.models.buffers import require_no_running_stats
from src.models.model import ModelFactory
from src.seeds import derive_seed
from src.training.flat_model import FlatModel
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule

# Bumped whenever this estimator changes what a given recipe produces.
FORMAT = 1
EVAL_CHUNK = 1024


def memorization_key(config) -> str:
    ds, t = config.dataset, config.training
    identity = {
        "format": FORMAT,
        "dataset": {"name": ds.name, "input_shape": ds.input_shape, "val_split": ds.val_split, "seed": ds.seed,
                    "batch_size": ds.batch_size},
        "model": config.model.model_dump(mode="json"),
        "optimizer": t.model_dump(mode="json", include={"optim", "max_lr", "momentum", "nesterov", "weight_decay",
                                                        "lr_schedule"}),
        "subsample": ds.forget.memorization.subsample.model_dump(mode="json"),
    }
    if ds.path is not None:
        identity["dataset"]["path"] = ds.path
    identity["model"].pop("batchnorm_stats", None)  # acts after unlearning only
    # the user's model and data files by content, and a model name fit for a file name
    return f"{ds.name}-{model_label(config.model.name)}-{stable_hash(user_files_by_content(identity), 12)}"


@contextmanager
def _locked(path: Path):
    """Hold `path`.lock exclusively; the lock file is removed again on the way out (no empty
    .lock files left behind). A waiter that wakes up holding a lock file someone has since
    removed tries again on the current one, so two runs never hold "the" lock at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".lock")
    while True:
        handle = open(lock, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def cached_subsample_scores(config, raw, train: torch.Tensor, device) -> np.ndarray:
    path = Path(config.checkpoints_dir) / "memorization" / f"{memorization_key(config)}.npz"
    train_np = train.cpu().numpy()
    with _locked(path):
        if path.is_file():
            with np.load(path) as cached:
                if not np.array_equal(cached["train_indices"], train_np):
                    raise UserError(f"{path}: memorization scores cached for another train split; delete the file")
                return cached["memorization"]
        sub = config.dataset.forget.memorization.subsample
        idx = train.to(raw.train_x.device)
        scores = subsample_scores(config.model.name, raw.num_classes, raw.input_shape, raw.train_x[idx],
                                  raw.train_y[idx], raw.augmentation, config.training, config.dataset.batch_size,
                                  sub.n_models, sub.fraction, sub.epochs,
                                  derive_seed(config.dataset.seed, "memorization"), device)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, memorization=scores, train_indices=train_np)
        os.replace(tmp, path)
        return scores


def subsample_scores(model_name, num_classes, input_shape, x, y, augmentation, optimizer_config, batch_size: int,
                     n_models: int, fraction: float, epochs: int, seed: int, device) -> np.ndarray:
    """The estimate over the examples (x, y); returns one float64 score per example."""
    x, y = x.to(device), y.to(device)
    n = y.shape[0]
    m = int(round(fraction * n))
    if not 0 < m < n:
        raise UserError(f"dataset.forget.memorization.subsample.fraction: {fraction} of {n} examples leaves no "
                        "example in or out of the subsets")
    template = FlatModel(ModelFactory.create_model(model_name, num_classes, input_shape), device)
    require_no_running_stats(template.module, "the memorization estimate (dataset.forget.memorization.source: subsample)")
    thetas = torch.stack([
        FlatModel(ModelFactory.create_model(model_name, num_classes, input_shape,
                                            seed=derive_seed(seed, f"init-{k}")), device).theta.detach()
        for k in range(n_models)]).requires_grad_(True)
    generator = make_generator(seed, device)
    subsets = torch.stack([torch.randperm(n, generator=generator, device=device)[:m] for _ in range(n_models)])
    members = torch.zeros(n_models, n, dtype=torch.bool, device=device)
    members.scatter_(1, subsets, True)

    def loss_one(theta, xb, yb):
        # Mean cross-entropy written out: F.cross_entropy under vmap goes through a
        # decomposition whose first use imports seconds of modules.
        logits = template(xb, theta)
        return (torch.logsumexp(logits, 1) - logits.gather(1, yb[:, None]).squeeze(1)).mean()

    batched_loss = vmap(loss_one)
    steps_per_epoch = -(-m // batch_size)
    optimizer = ScheduledOptimizer(make_optimizer(thetas, optimizer_config, optimizer_config.weight_decay),
                                   make_schedule(optimizer_config, epochs * steps_per_epoch))
    for _ in range(epochs):
        order = torch.argsort(torch.rand(n_models, m, generator=generator, device=device), dim=1)
        shuffled = subsets.gather(1, order)
        for start in range(0, m, batch_size):
            idx = shuffled[:, start:start + batch_size]
            xb = x[idx.reshape(-1)]
            if augmentation is not None:
                xb = augmentation(xb, generator)
            xb = xb.view(n_models, idx.shape[1], *x.shape[1:])
            # The sum of the K mean losses: each model's gradient is that of its own loss.
            loss = batched_loss(thetas, xb, y[idx]).sum()
            (thetas.grad,) = torch.autograd.grad(loss, thetas)
            optimizer.step()
            thetas.grad = None

    correct = torch.zeros(n_models, n, dtype=torch.bool, device=device)
    forward = vmap(lambda theta, xb: template(xb, theta), in_dims=(0, None))
    with torch.no_grad():
        for start in range(0, n, EVAL_CHUNK):
            logits = forward(thetas.detach(), x[start:start + EVAL_CHUNK])
            correct[:, start:start + EVAL_CHUNK] = logits.argmax(-1) == y[start:start + EVAL_CHUNK]
    correct = correct.double()
    n_in, n_out = members.sum(0), (~members).sum(0)
    p_in = (correct * members).sum(0) / n_in.clamp(min=1)
    p_out = (correct * ~members).sum(0) / n_out.clamp(min=1)
    # An example every model saw (or none did) has no estimate: score 0, the neutral value.
    scores = torch.where((n_in > 0) & (n_out > 0), p_in - p_out, torch.zeros_like(p_in))
    return scores.cpu().numpy()

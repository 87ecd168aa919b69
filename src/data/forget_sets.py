"""Which training examples are forgotten: one builder shared by every method, keyed by the
dataset seed (`dataset.forget`).

* `random` (the default) is the reference's two-stage split, unchanged: the same generator
  cuts the pool into train/val and then train into retain/forget (base_datamodule.py).
* `class` keeps that train/val split and forgets every train example of `classes`.
* `memorization` keeps it too and forgets the `forget_split` fraction of the train split
  chosen by memorization score (Feldman & Zhang), as RUM builds its forget sets: `high`
  (top scores), `low` (bottom), `mid` (closest to 0.5, or to the median for proxies) or
  `mix` (a third of each). Scores come from a file or are estimated here by subsampling
  (src/evaluation/memorization.py), cached per dataset seed.

The validation and test sets never change with the strategy, so every method (and the
retrain reference) of one dataset seed sees the same five splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.data.base_datamodule import SplitIndices, split_indices
from src.errors import ConfigError, UserError
from src.registry import MEMORIZATION_ESTIMATORS


def build_split(config, raw, device=None) -> SplitIndices:
    """The five index sets of `config` over `raw` (a RawDataset); `device` is where a
    memorization estimate trains (default: the data's device)."""
    ds = config.dataset
    pool = raw.train_y.shape[0]
    base = split_indices(pool, ds.val_split, ds.forget_split, ds.seed)
    strategy = ds.forget.strategy
    if strategy == "random":
        return base
    train = base.train
    if strategy == "class":
        in_forget = class_forget_mask(raw.train_y[train.to(raw.train_y.device)].cpu().numpy(), ds.forget.classes,
                                      raw.num_classes)
    else:
        scores = memorization_scores(config, raw, train, device)
        chosen = memorization_group(scores, base.forget.shape[0], ds.forget.memorization.group,
                                    ds.forget.memorization.mid_rule)
        in_forget = np.zeros(train.shape[0], dtype=bool)
        in_forget[chosen] = True
    keep = torch.from_numpy(in_forget)
    # Both in the train split's order, so the retain set's order is a function of the seed alone.
    return SplitIndices(train=train, val=base.val, retain=train[~keep], forget=train[keep])


def class_forget_mask(labels: np.ndarray, classes, num_classes: int) -> np.ndarray:
    unknown = [c for c in classes if c >= num_classes]
    if unknown:
        raise ConfigError(f"dataset.forget.classes: {list(classes)} has {unknown}, but the dataset has classes "
                          f"0..{num_classes - 1}")
    mask = np.isin(labels, list(classes))
    if mask.all():
        raise ConfigError(f"dataset.forget.classes: {list(classes)} is every class present; nothing would be retained")
    if not mask.any():
        raise ConfigError(f"dataset.forget.classes: {list(classes)} has no example in the train split")
    return mask


def rankings(scores, n: int, mid_rule: str) -> tuple[np.ndarray, np.ndarray]:
    """RUM's two orders of the scores' positions: descending score with ties in index order,
    and that list re-ranked by distance to 0.5 (true memorization) or to the median
    (proxies); refuses a forget set of n examples the scores cannot give."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < n <= scores.shape[0]:
        raise ConfigError(f"dataset.forget_split: a forget set of {n} examples cannot be drawn from {scores.shape[0]}")
    descending = np.argsort(-scores, kind="stable")
    centre = 0.5 if mid_rule == "closest_to_half" else float(np.median(scores))
    return descending, descending[np.argsort(np.abs(scores[descending] - centre), kind="stable")]


def memorization_group(scores: np.ndarray, n: int, group: str, mid_rule: str = "closest_to_half") -> np.ndarray:
    """Positions (into `scores`) of the n examples of a memorization group.

    The ranking is RUM's: descending score with ties in index order; `mid` re-ranks that list
    by distance to 0.5 (true memorization) or to the median (proxies); `mix` takes the top
    n//3 of high, the first n//3 of mid not already taken, and the lowest of the rest.
    """
    descending, mid = rankings(scores, n, mid_rule)
    if group == "high":
        return np.sort(descending[:n])
    if group == "low":
        return np.sort(descending[::-1][:n])
    if group == "mid":
        return np.sort(mid[:n])
    if group != "mix":
        raise ValueError(f"unknown memorization group {group!r}")
    return np.sort(np.concatenate(list(mix_parts(scores, n, mid_rule).values())))


def mix_parts(scores: np.ndarray, n: int, mid_rule: str = "closest_to_half") -> dict[str, np.ndarray]:
    """RUM's `mix` forget set by part, positions into `scores` in selection order:
    `high` the top n//3, `mid` the first n//3 of the mid ranking not already taken, `low`
    the lowest n - 2 (n//3) of the rest (the reference's "last N/3 of low")."""
    descending, mid = rankings(scores, n, mid_rule)
    third = n // 3
    high = descending[:third]
    seen = set(high.tolist())
    middle = np.asarray([i for i in mid if i not in seen][:third], dtype=np.int64)
    seen.update(middle.tolist())
    low = np.asarray([i for i in descending[::-1] if i not in seen][:n - 2 * third], dtype=np.int64)
    return {"low": low, "mid": middle, "high": np.asarray(high, dtype=np.int64)}


# ---------------------------------------------------------------------------------------
# Scores


def memorization_scores(config, raw, train: torch.Tensor, device=None) -> np.ndarray:
    """One score per train-split example, in the split's order."""
    mem = config.dataset.forget.memorization
    if mem.source == "file":
        return scores_from_file(mem.path, mem.key, mem.index_space, train, raw.train_y.shape[0])
    # An estimate trains models: it lives above the data (src/evaluation/memorization.py),
    # reached through the registry src/catalogue.py fills.
    estimate = MEMORIZATION_ESTIMATORS.get(mem.source)
    return estimate(config, raw, train, device or raw.train_x.device)


def scores_from_file(path: str, key: str, index_space: str, train: torch.Tensor, pool: int) -> np.ndarray:
    where = "dataset.forget.memorization.path"
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{where}: '{path}' does not exist; give a .npy array or an .npz with key '{key}' "
                        "(or use source: subsample to estimate the scores here)")
    try:
        data = np.load(file, allow_pickle=False)
    except Exception as e:  # not a numpy file: say which and why
        raise UserError(f"{where}: cannot read '{path}' as .npy/.npz: {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if key not in data.files:
            raise UserError(f"dataset.forget.memorization.key: '{key}' is not in '{path}', which holds "
                            f"{sorted(data.files)}")
        try:
            data = data[key]
        except Exception as e:  # an object array (pickled), a damaged member
            raise UserError(f"{where}: cannot read '{key}' of '{path}': {e}") from None
    # Real numbers only: strings and objects do not convert, complex ones would lose their
    # imaginary part with no more than a numpy warning.
    if np.asarray(data).dtype.kind not in "iuf":
        raise UserError(f"{where}: '{path}' holds {np.asarray(data).dtype} values; memorization scores are real "
                        "numbers (a float or integer array)")
    scores = np.asarray(data, dtype=np.float64).reshape(-1) if np.ndim(data) <= 1 else None
    expected = pool if index_space == "original" else train.shape[0]
    if scores is None or scores.shape[0] != expected:
        shape = list(np.shape(data))
        raise UserError(f"{where}: '{path}' holds an array of shape {shape}; index_space '{index_space}' needs one "
                        f"score per example, {expected} in all")
    if not np.isfinite(scores).all():
        raise UserError(f"{where}: '{path}' has non-finite scores")
    return scores[train.cpu().numpy()] if index_space == "original" else scores

"""The five splits of every experiment, identical to the original's
(docs/differences.md#splits).

The official train split is cut in two stages with ONE generator: random_split(pool,
[train, val]) and then random_split(train, [retain, forget]), as the original. torch's
random_split is a randperm. The generator is seeded with dataset.seed itself, as the
original did, so the index sets are the original's on the same torch version; no other
stream of a run takes a raw seed (DP-SGD's noise and batches, for example, derive theirs
from training.dp_sgd.seed for their purpose), so none replays the split's draws. The test
split is the official test set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import random_split


@dataclass(frozen=True)
class SplitSizes:
    pool: int
    test: int
    val: int
    train: int
    forget: int
    retain: int

    @classmethod
    def from_pool(cls, pool: int, test: int, val_split: float, forget_split: float) -> "SplitSizes":
        val = int(pool * val_split)
        train = pool - val
        forget = int(train * forget_split)
        return cls(pool=pool, test=test, val=val, train=train, forget=forget, retain=train - forget)


@dataclass(frozen=True)
class SplitIndices:
    """Indices into the official train split."""

    train: torch.Tensor
    val: torch.Tensor
    retain: torch.Tensor
    forget: torch.Tensor


def split_indices(pool_size: int, val_split: float, forget_split: float, seed: int) -> SplitIndices:
    sizes = SplitSizes.from_pool(pool_size, 0, val_split, forget_split)
    generator = torch.Generator().manual_seed(int(seed))
    train, val = random_split(range(pool_size), [sizes.train, sizes.val], generator=generator)
    retain, forget = random_split(train, [sizes.retain, sizes.forget], generator=generator)
    # retain/forget are subsets of the train subset: map their indices back to the pool.
    train_idx = torch.tensor(train.indices, dtype=torch.long)
    return SplitIndices(
        train=train_idx,
        val=torch.tensor(val.indices, dtype=torch.long),
        retain=train_idx[torch.tensor(retain.indices, dtype=torch.long)],
        forget=train_idx[torch.tensor(forget.indices, dtype=torch.long)],
    )


@dataclass
class Split:
    """Normalised inputs and labels, resident on the run's device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass
class DataModule:
    train: Split
    val: Split
    forget: Split
    retain: Split
    test: Split
    indices: SplitIndices
    num_classes: int
    input_shape: tuple[int, ...]
    # Called on a normalised batch with a generator; None when the dataset has none.
    augmentation: object | None = None

    @property
    def sizes(self) -> SplitSizes:
        return SplitSizes(pool=len(self.train) + len(self.val), test=len(self.test), val=len(self.val),
                          train=len(self.train), forget=len(self.forget), retain=len(self.retain))

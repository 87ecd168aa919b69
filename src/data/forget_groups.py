"""The forget set cut into groups, for RUM (Zhao et al., NeurIPS 2024): which positions of
the forget split (0 .. n-1, in that split's order) each group holds.

* On a `mix` forget set grouped by the scores that built it, the groups are the mix's own
  parts (src/data/forget_sets.py `mix_parts`): high, mid and low memorization exactly as
  selected.
* Otherwise (another forget set, or another score: a proxy, the entanglement score) the
  forget set is ranked by the score, ascending with ties in forget-split order, and cut
  into low (the lowest n - 2 (n//3)), mid (the next n//3) and high (the top n//3), the
  sizes of the mix's parts.
* The reference's shuffled control pools the groups' examples and deals them, in a seeded
  random order, into groups of the same sizes, destroying the grouping.

Numpy only: sizes are known before any data are touched.
"""

from __future__ import annotations

import numpy as np

from src.data.forget_sets import mix_parts

# The scores RUM cuts groups by that src/evaluation/proxies.py computes (high = memorized):
# the learning events, recorded while the pretrained model trains, and the two computed
# from the model afterwards. Named here, below both RUM and the proxies, which share them.
LEARNING_EVENTS = ("confidence", "max_conf", "entropy", "bi_acc")
PROXIES = LEARNING_EVENTS + ("holdout_kl", "curvature")

GROUPS = ("low", "mid", "high")
WHOLE = "all"  # one group: the whole forget set (RUM of one step is that step's method)


def group_sizes(n: int) -> dict[str, int]:
    """The sizes of the three groups of a forget set of n examples (the mix's parts)."""
    third = n // 3
    return {"low": n - 2 * third, "mid": third, "high": third}


def ranked_groups(scores: np.ndarray) -> dict[str, np.ndarray]:
    """Forget positions by group, cut from the ascending ranking of `scores` (one per forget
    example; high = more memorized)."""
    scores = np.asarray(scores, dtype=np.float64)
    sizes = group_sizes(scores.shape[0])
    ascending = np.argsort(scores, kind="stable")
    low_end = sizes["low"]
    mid_end = low_end + sizes["mid"]
    return {"low": np.sort(ascending[:low_end]), "mid": np.sort(ascending[low_end:mid_end]),
            "high": np.sort(ascending[mid_end:])}


def mix_groups(train_scores: np.ndarray, forget_in_train: np.ndarray, mid_rule: str) -> dict[str, np.ndarray]:
    """The parts of a `mix` forget set built from `train_scores` (one per train-split
    example), as forget positions; `forget_in_train[j]` is forget example j's train position."""
    parts = mix_parts(train_scores, forget_in_train.shape[0], mid_rule)
    where = {int(t): j for j, t in enumerate(forget_in_train)}
    missing = [int(t) for part in parts.values() for t in part if int(t) not in where]
    if missing:
        raise ValueError(f"{len(missing)} examples of the mix's parts are not in the forget set: the forget set was "
                         "not built from these scores")
    return {name: np.sort(np.asarray([where[int(t)] for t in part], dtype=np.int64)) for name, part in parts.items()}


def shuffled_groups(groups: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The reference's control: the same examples pooled and dealt, in a seeded random order,
    into groups of the same sizes (keys in the same order)."""
    pooled = np.sort(np.concatenate(list(groups.values())))
    dealt = np.random.default_rng(seed).permutation(pooled)
    out, start = {}, 0
    for name, part in groups.items():
        out[name] = np.sort(dealt[start:start + len(part)])
        start += len(part)
    return out


def forget_in_train(indices) -> np.ndarray:
    """Each forget example's position in the train split (SplitIndices in official numbering)."""
    where = {int(t): i for i, t in enumerate(indices.train.cpu().numpy())}
    return np.asarray([where[int(t)] for t in indices.forget.cpu().numpy()], dtype=np.int64)


def mix_forget_groups(config, data, device="cpu") -> dict[str, np.ndarray] | None:
    """The parts (forget positions) of a run's `mix` forget set; None for any other forget set."""
    fs = config.dataset.forget
    if fs.strategy != "memorization" or fs.memorization.group != "mix":
        return None
    from src.data.datamodule import dataset_family
    from src.data.forget_sets import memorization_scores

    raw = dataset_family(config).load(config, device)
    scores = memorization_scores(config, raw, data.indices.train, device)
    return mix_groups(scores, forget_in_train(data.indices), fs.memorization.mid_rule)

"""Closeness to retrain: the NeurIPS 2023 unlearning challenge's forgetting score (numpy only).

The challenge (google-deepmind/unlearning_evaluation, `metric.py`; reimplemented here, the
definitions kept so that numbers compare with its leaderboard) compares, for every forget
example, its logit-scaled confidence log p_y - log(1 - p_y) under N unlearned models with
its confidence under N models retrained from scratch without the forget set:

1. the side whose median is larger is "positive";
2. decision rules: single thresholds (score >= t is positive) and double thresholds (in
   [l, r] is the peakier side), 100 per unit of score;
3. per rule, epsilon = max(ln(1 - delta - FPR) - ln FNR, ln(1 - delta - FNR) - ln FPR),
   at least 0, delta = 1e-5; a rule with exactly one of FPR, FNR zero is discarded, one with
   both zero gives infinity; the example's epsilon is the largest, capped at 50 (50 too when
   one side's range is under 1% of the other's);
4. buckets of width 0.5 up to ceil(ln(N - 1)) are worth 1, 1/2, 1/4, ...; the forgetting
   quality F is the mean worth of the examples' epsilons (1 is the best; an epsilon past
   the last bucket is worth 0).
5. the final score is F (RA / RA_retrain) (TA / TA_retrain): the unlearned models' retain
   and test accuracy against the retrained models', each the mean over the N models of its
   side (challenge_score; 1 at best, for an unlearning that is retraining).

It is a point estimate without confidence (with N models per side nothing above about
ln N can be resolved, and identical distributions score below 1 by chance): the audit
reports a Clopper-Pearson lower bound between the same two sets of models beside it.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
PER_UNIT = 100
BUFFER = 2.0  # how far the double thresholds reach beyond the peakier side
LEFT_THRESHOLDS = int(math.ceil(2 * BUFFER * PER_UNIT))


def _rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Each rule's epsilon (nan: discarded)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.maximum(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.clip(eps, 0.0, None)
    both = (fpr == 0) & (fnr == 0)
    one = ((fpr == 0) | (fnr == 0)) & ~both
    return np.where(both, np.inf, np.where(one, np.nan, eps))


def _count_at_least(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_scores) - np.searchsorted(sorted_scores, t, side="left")


def _count_between(sorted_scores: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_scores, right, side="right") - np.searchsorted(sorted_scores, left, side="left")


def example_epsilon(positive: np.ndarray, negative: np.ndarray, delta: float = DELTA) -> float:
    """One forget example's epsilon from its scores under the positive and negative side."""
    pos, neg = np.sort(np.asarray(positive, float)), np.sort(np.asarray(negative, float))
    pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
    largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
    if largest == 0 or smallest / largest < 0.01:
        return EPSILON_CAP
    eps = []
    # single thresholds over the pooled range: score >= t is positive
    lo, hi = min(pos[0], neg[0]), max(pos[-1], neg[-1])
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * PER_UNIT)))
    tpr = _count_at_least(pos, t) / len(pos)
    fpr = _count_at_least(neg, t) / len(neg)
    eps.append(_rule_epsilons(fpr, 1 - tpr, delta))
    # double thresholds: inside [l, r] is the peakier side
    peaky, broad = (neg, pos) if pos_range >= neg_range else (pos, neg)
    width = smallest
    right_lo, right_hi = peaky[0] + width - BUFFER, peaky[-1] + BUFFER
    right = np.linspace(right_lo, right_hi, int(math.ceil((right_hi - right_lo) * PER_UNIT)))
    offsets = np.linspace(-width - BUFFER, -width + BUFFER, LEFT_THRESHOLDS)
    left = (right[:, None] + offsets[None, :]).ravel()
    right = np.repeat(right, LEFT_THRESHOLDS)
    tpr = _count_between(peaky, left, right) / len(peaky)
    fpr = _count_between(broad, left, right) / len(broad)
    eps.append(_rule_epsilons(fpr, 1 - tpr, delta))
    eps = np.concatenate(eps)
    kept = eps[~np.isnan(eps)]
    if kept.size == 0:
        raise ValueError("every decision rule was discarded")
    return float(min(np.max(kept), EPSILON_CAP))


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """[examples] epsilons from [models, examples] scores of each side."""
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    out = np.empty(unlearned.shape[1])
    for j in range(unlearned.shape[1]):
        pos, neg = (retrained[:, j], unlearned[:, j]) if retrain_positive[j] else (unlearned[:, j], retrained[:, j])
        out[j] = example_epsilon(pos, neg, delta)
    return out


def forgetting_quality(epsilons: np.ndarray, models: int) -> float:
    """F: the mean bucket worth of the examples' epsilons (1 at best), for `models` per side."""
    top = math.ceil(math.log(models - 1))
    edges, worth, start = [], [], 0.0
    points = 1.0
    while start + 0.5 <= top:
        edges.append(start + 0.5)
        worth.append(points)
        points /= 2
        start += 0.5
    total = 0.0
    for e in np.asarray(epsilons, float):
        for edge, w in zip(edges, worth):
            if e < edge:
                total += w
                break
    return total / len(epsilons)


def challenge_score(forgetting_quality: float, retain_accuracy: float, test_accuracy: float,
                    retain_accuracy_retrain: float, test_accuracy_retrain: float) -> float:
    """The challenge's final score F (RA / RA_retrain) (TA / TA_retrain): forgetting quality
    weighted by the utility the unlearned models keep relative to retraining (a ratio above
    1 is kept: the challenge does not cap it)."""
    values = {"forgetting quality": forgetting_quality, "retain accuracy": retain_accuracy,
              "test accuracy": test_accuracy}
    for name, value in {**values, "retrained retain accuracy": retain_accuracy_retrain,
                        "retrained test accuracy": test_accuracy_retrain}.items():
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"{name} {value} must be in [0, 1]")
    if retain_accuracy_retrain == 0 or test_accuracy_retrain == 0:
        raise ValueError("the retrained models' accuracies must be above 0 (they divide the score)")
    return forgetting_quality * (retain_accuracy / retain_accuracy_retrain) * (test_accuracy / test_accuracy_retrain)

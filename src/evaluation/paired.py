"""Paired comparisons of two methods over the seeds they share.

In an ensemble folder every method's member i starts from the same pretrained model (member
i's seed) and is compared with the same retrain member, so most of the seed-to-seed
variation is common to both methods. The difference of two methods is therefore judged on
the per-seed differences d_i = a_i - b_i: their mean, the Student-t 95% interval and the
two-sided p-value of "mean difference 0", with Holm's step-down correction when a table
makes several such comparisons at once (it controls the chance of any false "significant"
at the level, whatever the dependence between the comparisons).

Pure functions over plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedDifference:
    n: int  # seeds both methods have
    mean: float  # mean of a_i - b_i
    ci95: float | None  # Student-t half-width; None below two pairs
    p: float | None  # two-sided p-value of mean 0; None below two pairs


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> PairedDifference | None:
    """a, b: {seed: value}. None when they share no seed."""
    from scipy.stats import t

    common = sorted(set(a) & set(b), key=repr)
    if not common:
        return None
    d = [float(a[s]) - float(b[s]) for s in common]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return PairedDifference(n, mean, None, None)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:
        # every pair differs by the same amount: no spread to test against
        return PairedDifference(n, mean, 0.0, 1.0 if mean == 0.0 else 0.0)
    se = sd / math.sqrt(n)
    half = float(t.ppf(0.5 + confidence / 2, n - 1) * se)
    p = float(2 * t.sf(abs(mean) / se, n - 1))
    return PairedDifference(n, mean, half, p)


def holm(pvalues: list) -> list:
    """Holm-adjusted p-values (None stays None): the k-th smallest of m is multiplied by
    m - k + 1, made monotone, capped at 1. Reject at level alpha where adjusted <= alpha."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    adjusted = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted

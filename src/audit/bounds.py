"""Epsilon lower bounds from two samples of scores, with confidence (numpy/scipy only).

(epsilon, delta)-indistinguishability of worlds A and B says, for every set R of outputs
and both orders (P, Q) = (A, B) and (B, A) (Kairouz, Oh, Viswanath 2015):

    P(R) <= e^eps Q(R) + delta,   so   eps >= ln((P(R) - delta) / Q(R)).

An audit takes R = {score > t} or {score <= t} for one score, bounds P(R) from below and
Q(R) from above with one-sided Clopper-Pearson intervals at level (1 - confidence) / 2
each (Jagielski, Ullman, Oprea 2020; Nasr et al. 2021), and so holds with probability at
least `confidence` (a union bound over the two intervals).

Choosing R on the samples it is evaluated on would make the bound optimistic. The chains
of each world are split in two halves: the score, threshold, side and order are chosen on
the first half (maximising the same bound there) and the bound is computed once, on the
second half. No correction for the number of scores or thresholds is then needed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from src.errors import UserError


def clopper_pearson(k, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson bounds for a binomial proportion, each at level `alpha`.

    lower: the p with P[Bin(n, p) >= k] = alpha (0 when k = 0);
    upper: the p with P[Bin(n, p) <= k] = alpha (1 when k = n).
    Exact (conservative) for every n: P[p < lower] <= alpha and P[p > upper] <= alpha.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k = np.asarray(k, dtype=float)
    if np.any((k < 0) | (k > n)):
        raise ValueError(f"counts must lie in [0, {n}]")
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, stats.beta.ppf(alpha, k, n - k + 1), 0.0)
        upper = np.where(k < n, stats.beta.ppf(1 - alpha, k + 1, n - k), 1.0)
    return lower, upper


def epsilon_from_rates(p, q, delta: float):
    """ln((p - delta) / q): the epsilon that P(R) = p, Q(R) = q force; -inf where p <= delta."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.log(np.maximum(p - delta, 0.0)) - np.log(q)
    return np.where(p > delta, eps, -np.inf)


def ceiling(n: int, delta: float, confidence: float, n_q: int | None = None) -> float:
    """The largest lower bound n chains per world could ever show: all n of P in R and
    none of the n_q (default n) of Q (perfect separation), through the same intervals."""
    alpha = (1 - confidence) / 2
    lower, _ = clopper_pearson(n, n, alpha)
    _, upper = clopper_pearson(0, n if n_q is None else n_q, alpha)
    return float(epsilon_from_rates(lower, upper, delta))


@dataclass(frozen=True)
class Test:
    """R = {score > threshold} (side ">") or {score <= threshold} (side "<="); `order`
    "A/B" bounds ln((A(R) - delta) / B(R)), "B/A" the other way round."""

    score: int
    threshold: float
    side: str
    order: str

    def counts(self, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[int, int]:
        """How many chains of P and of Q fall in R."""
        a, b = scores_a[:, self.score], scores_b[:, self.score]
        in_a = a > self.threshold if self.side == ">" else a <= self.threshold
        in_b = b > self.threshold if self.side == ">" else b <= self.threshold
        k_a, k_b = int(in_a.sum()), int(in_b.sum())
        return (k_a, k_b) if self.order == "A/B" else (k_b, k_a)


def _bound(k_p, k_q, n_p: int, n_q: int, delta: float, alpha: float):
    p_lower, _ = clopper_pearson(k_p, n_p, alpha)
    _, q_upper = clopper_pearson(k_q, n_q, alpha)
    return epsilon_from_rates(p_lower, q_upper, delta)


# Thresholds tried per score when choosing the test: the midpoints between all observed
# values up to this many, else this many evenly spaced among them (the choice only has
# to be good, not exhaustive: the bound is valid whatever is chosen).
MAX_THRESHOLDS = 8192


def _thresholds(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pooled = np.unique(np.concatenate([a, b]))
    if len(pooled) < 2:
        return pooled
    i = np.arange(len(pooled) - 1)
    if len(i) > MAX_THRESHOLDS:
        i = np.unique(np.linspace(0, len(pooled) - 2, MAX_THRESHOLDS).astype(int))
    return (pooled[i] + pooled[i + 1]) / 2


class _BoundTable:
    """Clopper-Pearson bounds of the counts that occur, computed once each."""

    def __init__(self, n: int, counts: np.ndarray, alpha: float):
        self.counts = np.unique(counts)
        self.lower, self.upper = clopper_pearson(self.counts, n, alpha)

    def __call__(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(self.counts, k)
        return self.lower[i], self.upper[i]


def select_test(scores_a: np.ndarray, scores_b: np.ndarray, delta: float, confidence: float) -> tuple[Test, float]:
    """The test with the largest Clopper-Pearson bound on these chains, over every score
    (column), thresholds between observed values, both sides and both orders."""
    n_a, n_b = scores_a.shape[0], scores_b.shape[0]
    alpha = (1 - confidence) / 2
    columns = []
    for column in range(scores_a.shape[1]):
        a, b = np.sort(scores_a[:, column]), np.sort(scores_b[:, column])
        thresholds = _thresholds(a, b)
        above_a = n_a - np.searchsorted(a, thresholds, side="right")
        above_b = n_b - np.searchsorted(b, thresholds, side="right")
        columns.append((thresholds, above_a, above_b))
    table_a = _BoundTable(n_a, np.concatenate([np.r_[c[1], n_a - c[1]] for c in columns]), alpha)
    table_b = _BoundTable(n_b, np.concatenate([np.r_[c[2], n_b - c[2]] for c in columns]), alpha)
    best, best_value = None, -np.inf
    for column, (thresholds, above_a, above_b) in enumerate(columns):
        for side, k_a, k_b in ((">", above_a, above_b), ("<=", n_a - above_a, n_b - above_b)):
            (lower_a, upper_a), (lower_b, upper_b) = table_a(k_a), table_b(k_b)
            for order, values in (("A/B", epsilon_from_rates(lower_a, upper_b, delta)),
                                  ("B/A", epsilon_from_rates(lower_b, upper_a, delta))):
                i = int(np.argmax(values))
                if best is None or values[i] > best_value:
                    best, best_value = Test(column, float(thresholds[i]), side, order), float(values[i])
    return best, best_value


@dataclass
class LowerBound:
    """An epsilon lower bound at `confidence`, with what it rests on."""

    epsilon: float  # max(0, raw): what the audit reports
    raw: float  # the bound on the evaluation half (may be negative or -inf)
    point_estimate: float  # the same test's ln((p - delta) / q) without confidence intervals
    ceiling: float
    confidence: float
    delta: float
    test: Test
    selection_bound: float  # the test's bound on the selection half
    selection_chains: int  # per world
    evaluation_chains: int  # per world
    counts: tuple[int, int]  # chains of P and of Q in R, evaluation half

    def as_dict(self) -> dict:
        out = asdict(self)
        out["test"] = asdict(self.test)
        for key in ("epsilon", "raw", "point_estimate", "ceiling", "selection_bound"):
            out[key] = _json_number(out[key])
        return out


def _json_number(x: float):
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def split_halves(n: int) -> tuple[slice, slice]:
    """The chains that choose the test and the chains that evaluate it (a fixed split:
    the chains of a world are independent and identically distributed)."""
    half = n // 2
    return slice(0, half), slice(half, n)


def lower_bound(scores_a: np.ndarray, scores_b: np.ndarray, delta: float, confidence: float = 0.95) -> LowerBound:
    """The audit's epsilon lower bound from [chains, scores] matrices of the two worlds."""
    scores_a, scores_b = np.atleast_2d(np.asarray(scores_a, float).T).T, np.atleast_2d(np.asarray(scores_b, float).T).T
    if scores_a.shape[1] != scores_b.shape[1]:
        raise ValueError("both worlds need the same scores")
    if min(len(scores_a), len(scores_b)) < 4:
        raise ValueError("at least 4 chains per world are needed (2 to choose the test, 2 to evaluate it)")
    if not (np.all(np.isfinite(scores_a)) and np.all(np.isfinite(scores_b))):
        raise ValueError("scores must be finite")
    select_a, eval_a = split_halves(len(scores_a))
    select_b, eval_b = split_halves(len(scores_b))
    test, selection_bound = select_test(scores_a[select_a], scores_b[select_b], delta, confidence)
    ea, eb = scores_a[eval_a], scores_b[eval_b]
    k_p, k_q = test.counts(ea, eb)
    n_p, n_q = (len(ea), len(eb)) if test.order == "A/B" else (len(eb), len(ea))
    raw = float(_bound(k_p, k_q, n_p, n_q, delta, (1 - confidence) / 2))
    point = float(epsilon_from_rates(k_p / n_p, k_q / n_q, delta))
    best_case = max(ceiling(len(ea), delta, confidence, len(eb)), ceiling(len(eb), delta, confidence, len(ea)))
    return LowerBound(epsilon=max(0.0, raw), raw=raw, point_estimate=point, ceiling=best_case,
                      confidence=confidence, delta=delta, test=test, selection_bound=selection_bound,
                      selection_chains=min(len(scores_a[select_a]), len(scores_b[select_b])),
                      evaluation_chains=min(len(ea), len(eb)), counts=(k_p, k_q))


# -- a Gaussian-DP estimate (an estimate, not a bound) --------------------------------------


@dataclass
class GaussianEstimate:
    """The epsilon at `delta` of mu-GDP (Dong, Roth, Su 2022), with mu read off one
    pre-registered test by its Clopper-Pearson rates (Nasr et al. 2023's Gaussian fit).

    It holds at `confidence` only if the two worlds' score distributions are the two
    Gaussians of a mu-GDP trade-off (equal variances, shifted means), which an audit
    assumes and does not test: it is an estimate, never what decides exit status 3."""

    epsilon: float  # of the Clopper-Pearson mu, at delta
    mu: float  # Phi^-1(1 - FPR_hi) - Phi^-1(FNR_hi), floored at 0
    point_epsilon: float  # of mu from the raw rates (no confidence), at delta
    point_mu: float
    threshold: float
    counts: tuple[int, int]  # false negatives (A <= t) of n_a, false positives (B > t) of n_b
    chains: tuple[int, int]
    confidence: float
    delta: float

    def as_dict(self) -> dict:
        out = asdict(self)
        out["assumption"] = ("Gaussian: the two worlds' scores are N(m_A, s^2) and N(m_B, s^2) (mu-GDP); an estimate, "
                             "not a bound")
        return out


def gaussian_estimate(score_a, score_b, delta: float, confidence: float = 0.95) -> GaussianEstimate:
    """mu-GDP estimate from one score of every chain of both worlds (no split: the test is
    fixed in advance). The test is R = {score > t} with P = A: the score is oriented so that
    world A lies above world B (the projection on the direction from B's start to A's), and
    t is the pooled median of all chains, the midpoint of two equal-variance Gaussians.

    Under mu-GDP every test has FNR = Phi(Phi^-1(1 - FPR) - mu), so one test's rates give
    mu = Phi^-1(1 - FPR) - Phi^-1(FNR); with each rate replaced by its one-sided
    Clopper-Pearson upper bound at (1 - confidence) / 2, mu is low at `confidence` (if the
    assumption holds), and so is its epsilon (src/privacy/gaussian.py: gaussian_epsilon).
    """
    from src.privacy.gaussian import gaussian_epsilon

    a, b = np.asarray(score_a, float).ravel(), np.asarray(score_b, float).ravel()
    if min(len(a), len(b)) < 2:
        raise ValueError("at least 2 chains per world are needed")
    threshold = float(np.median(np.concatenate([a, b])))
    false_neg, false_pos = int(np.sum(a <= threshold)), int(np.sum(b > threshold))
    alpha = (1 - confidence) / 2
    _, fnr_hi = clopper_pearson(false_neg, len(a), alpha)
    _, fpr_hi = clopper_pearson(false_pos, len(b), alpha)

    def mu_of(fpr: float, fnr: float) -> float:
        # rates of 0 are clipped to half a chain: an estimate needs a finite mu
        fpr = min(max(fpr, 0.5 / len(b)), 1 - 0.5 / len(b))
        fnr = min(max(fnr, 0.5 / len(a)), 1 - 0.5 / len(a))
        return max(0.0, float(stats.norm.isf(fpr) - stats.norm.ppf(fnr)))

    mu = mu_of(float(fpr_hi), float(fnr_hi))
    point = mu_of(false_pos / len(b), false_neg / len(a))
    return GaussianEstimate(epsilon=gaussian_epsilon(mu, delta), mu=mu, point_epsilon=gaussian_epsilon(point, delta),
                            point_mu=point, threshold=threshold, counts=(false_neg, false_pos),
                            chains=(len(a), len(b)), confidence=confidence, delta=delta)


def smallest_useful_chains(delta: float, confidence: float) -> int | None:
    """The fewest chains per world whose ceiling (the bound of a perfect separation) is above
    0: with fewer the audit can never show anything. Half the chains choose the test and
    the other n - n // 2 evaluate it, so n = 2 m - 1 for the smallest useful m. None when
    no count is useful (delta so large that even certainty shows nothing)."""
    useful = lambda m: ceiling(m, delta, confidence) > 0  # noqa: E731  (increasing in m)
    high = 2
    while not useful(high):
        high *= 2
        if high > 2**40:
            return None
    low = high // 2  # not useful (or 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if useful(middle) else (middle, high)
    return max(4, 2 * high - 1)


def check_chain_count(chains: int, delta: float, confidence: float) -> None:
    """Refuse a chain count whose ceiling is at or below 0, naming the smallest useful one."""
    needed = smallest_useful_chains(delta, confidence)
    if needed is None:
        raise UserError(f"delta {delta:g}: no number of chains can show a lower bound above 0 at confidence "
                        f"{confidence:g}")
    if chains < needed:
        raise UserError(f"--chains: {chains} chains per world can never show a lower bound above 0 (their ceiling, "
                        f"the bound of a perfect separation, is {ceiling(chains - chains // 2, delta, confidence):.3f} "
                        f"at confidence {confidence:g}); use at least {needed}")

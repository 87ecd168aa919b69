"""DP-SGD's exact group accountant: the forget set as one Poisson-subsampled Gaussian.

Pure functions of numbers (numpy; dp-accounting's privacy loss distributions, imported
on first use).

Why it is exact. DP-SGD samples each example into each batch independently with rate q,
sums the clipped gradients (norm <= C each) and adds N(0, (sigma C)^2 I). Removing a group
of k examples (the forget set) changes a step only through the m group members that the
step sampled, m ~ Binomial(k, q), and shifts the sum by at most m C. So one step is the
mixture-of-Gaussians mechanism sum_m Bin(m; k, q) N(m C u_m, (sigma C)^2 I) against
N(0, (sigma C)^2 I); by Choquette-Choo, Ganesh, Steinke, Thakurta 2023 (Privacy
Amplification for Matrix Mechanisms, Cor. 4.7) it is dominated by the scalar mixture with
sensitivities m (in units of C, noise multiplier sigma), which is attained when the group's
gradients coincide: no slack at all. dp-accounting's ``MixtureGaussianPrivacyLoss``
builds that pair's privacy loss distribution (both directions, add and remove), with
pessimistic rounding (an upper bound on delta for every epsilon), and composes it
``steps`` times exactly by FFT (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, "Connect
the Dots"); adaptive composition holds because the per-step pair dominates every step.

The (eps, delta) group lemma applied to an RDP per-example guarantee, the rule it
replaces, loses twice: RDP -> (eps, delta) per example, then k-fold group privacy. For the
Figure 3 target (epsilon 50, delta 1e-5 for k = 225) the exact accountant needs about 30%
less noise (12.75 instead of 18.03; tests/test_dp_sgd.py).

Truncation, accounted for. The binomial's tail above m_max, of mass t <= 1e-25 / steps,
is dropped from the mixture. Removing it changes the composed distribution on the mixture
side by at most steps * t in total variation (delta grows by that), and on the other side
the truncated mixture times (1 - t) stays below the full one, which moves epsilon by
steps * log(1/(1 - t)) ~ 1e-25: both are added to the result.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PLD_DISCRETIZATION",
    "binomial_group_weights",
    "exact_group_delta",
    "grid_width",
    "ExactGroupCalibration",
    "calibrate_exact_group",
]

# Width of the privacy-loss grid: pessimistic at any width. 3e-3 is within 0.03% of the
# noise multiplier that 1e-3 gives for the Figure 3 target, at a third of the time; a
# step whose losses span more than 500 such widths gets a coarser grid (building the
# distribution costs about 1 ms per grid point).
PLD_DISCRETIZATION = 3e-3
_MAX_GRID_POINTS = 500
_TAIL_MASS_PER_STEP = 1e-25
# The final width of the calibration's grid. The pessimistic grid rounds every step's loss
# up, which costs a few percent of epsilon at small targets (3e-3: the noise of epsilon 1,
# 870 steps at q = 0.036 is 0.9% above what a 1e-4 grid needs; 1e-3: 0.1%); the search
# runs at the default width and is then refined near its root at this width, with at most
# _MAX_FINE_POINTS points for a wide step (tests/test_privacy_group_pld.py measures it).
FINE_DISCRETIZATION = 1e-3
_MAX_FINE_POINTS = 3000


def _check_inputs(noise_multiplier, q, steps, k) -> None:
    if not (isinstance(noise_multiplier, (int, float, np.floating)) and math.isfinite(noise_multiplier)
            and noise_multiplier > 0):
        raise ValueError(f"noise_multiplier must be a finite number > 0, got noise_multiplier={noise_multiplier!r}")
    if not (isinstance(q, (int, float, np.floating)) and 0 < q <= 1):
        raise ValueError(f"q (sampling rate) must be a number in (0, 1], got q={q!r}")
    for name, value in (("steps", steps), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")


def binomial_group_weights(k: int, q: float, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Sensitivities m = 0..m_max, their Binomial(k, q) probabilities (renormalised), and
    the dropped tail mass t (<= 1e-25 / steps). Log-space pmf: q^k underflows for k ~ 200."""
    log_q, log_1mq = math.log(q), (math.log1p(-q) if q < 1 else -math.inf)
    m = np.arange(k + 1)
    log_pmf = np.array([math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1)
                        + i * log_q + ((k - i) * log_1mq if k > i else 0.0) for i in range(k + 1)])
    pmf = np.exp(log_pmf - np.logaddexp.reduce(log_pmf))
    tail = np.cumsum(pmf[::-1])[::-1]  # tail[i] = P(M >= i)
    budget = _TAIL_MASS_PER_STEP / steps
    beyond = np.nonzero(tail <= budget)[0]
    m_max = int(beyond[0]) - 1 if beyond.size else k
    m_max = max(m_max, 1)
    dropped = float(tail[m_max + 1]) if m_max < k else 0.0
    kept = pmf[: m_max + 1]
    return m[: m_max + 1].astype(float), kept / kept.sum(), dropped


def exact_group_delta(noise_multiplier, q, steps, k, epsilon, *, discretization=None) -> float:
    """delta(epsilon) for a group of k under ``steps`` Poisson-subsampled Gaussian steps
    (rate q, noise multiplier sigma): the larger of the add and remove directions, an upper
    bound (pessimistic privacy loss distribution plus the truncation terms above).
    ``discretization`` None: PLD_DISCRETIZATION, or coarser for a wide step (see there)."""
    _check_inputs(noise_multiplier, q, steps, k)
    return _delta_cached(float(noise_multiplier), float(q), int(steps), int(k), float(epsilon),
                         None if discretization is None else float(discretization))


def _grid_width(sigma: float, sensitivities, probs) -> float:
    """PLD_DISCRETIZATION, or the span of one step's privacy losses over 500 points."""
    from dp_accounting.pld import privacy_loss_mechanism

    span = 0.0
    for adjacency in (privacy_loss_mechanism.AdjacencyType.REMOVE, privacy_loss_mechanism.AdjacencyType.ADD):
        loss = privacy_loss_mechanism.MixtureGaussianPrivacyLoss(sigma, sensitivities, probs, adjacency_type=adjacency)
        tail = loss.privacy_loss_tail()
        span = max(span, loss.privacy_loss(tail.lower_x_truncation) - loss.privacy_loss(tail.upper_x_truncation))
    return max(PLD_DISCRETIZATION, span / _MAX_GRID_POINTS)


@functools.lru_cache(maxsize=8)
def _composed(sigma: float, q: float, steps: int, k: int, discretization: float | None):
    """The composed privacy loss distribution, its grid width and the dropped tail mass."""
    from dp_accounting.pld import privacy_loss_distribution  # ~1 s import: only for the exact rule

    sensitivities, probs, dropped = binomial_group_weights(k, q, steps)
    if discretization is None:
        discretization = _grid_width(sigma, sensitivities, probs)
    pld = privacy_loss_distribution.from_mixture_gaussian_mechanism(
        sigma, sensitivities, probs, pessimistic_estimate=True, value_discretization_interval=discretization)
    return pld.self_compose(steps), discretization, dropped


@functools.lru_cache(maxsize=256)
def _delta_cached(sigma: float, q: float, steps: int, k: int, epsilon: float, discretization: float | None) -> float:
    composed, _, dropped = _composed(sigma, q, steps, k, discretization)
    shift = steps * -math.log1p(-dropped) if dropped else 0.0
    delta = float(composed.get_delta_for_epsilon(epsilon - 2 * shift))
    return min(1.0, delta + steps * dropped)


def grid_width(noise_multiplier, q, steps, k) -> float:
    """The default grid width of ``exact_group_delta`` for this step."""
    sensitivities, probs, _ = binomial_group_weights(int(k), float(q), int(steps))
    return _grid_width(float(noise_multiplier), sensitivities, probs)


@dataclass(frozen=True)
class ExactGroupCalibration:
    """The smallest noise multiplier (to 1e-4 relative) whose exact group delta at the
    target epsilon is <= the target delta on a grid of width ``discretization``; ``delta``
    is that noise's delta (None: the default width)."""

    noise_multiplier: float
    delta: float
    evaluations: int
    seconds: float
    discretization: float | None = None


def calibrate_exact_group(target_epsilon, target_delta, q, steps, k, upper) -> ExactGroupCalibration:
    """Noise multiplier for (target_epsilon, target_delta) for the group, searched below
    ``upper`` (the group lemma's noise multiplier: the exact accountant must never need
    more, and a ValueError says so if it would). Brent's method on log delta over
    log sigma, then the feasible end, refined at FINE_DISCRETIZATION. Cached in-process."""
    _check_inputs(upper, q, steps, k)
    if not (0 < target_delta < 1) or not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"targets must be epsilon > 0 finite and delta in (0, 1), got {target_epsilon!r}, "
                         f"{target_delta!r}")
    return _calibrate_cached(float(target_epsilon), float(target_delta), float(q), int(steps), int(k), float(upper))


@functools.lru_cache(maxsize=32)
def _calibrate_cached(target_epsilon, target_delta, q, steps, k, upper) -> ExactGroupCalibration:
    started = time.perf_counter()
    evaluations = 0

    def excess(log_sigma: float, width: float | None = None) -> float:
        nonlocal evaluations
        evaluations += 1
        delta = exact_group_delta(math.exp(log_sigma), q, steps, k, target_epsilon, discretization=width)
        return math.log(max(delta, 1e-300)) - math.log(target_delta)

    hi = math.log(upper)
    if excess(hi) > 0:
        raise ValueError(f"the exact group accountant gives delta above {target_delta!r} at the group lemma's "
                         f"noise multiplier {upper!r}; it must never be looser than the lemma")
    lo = hi - math.log(2.0)
    while excess(lo) <= 0:
        if lo < math.log(1e-2):  # the reference's bisection floor: no smaller noise is searched
            return ExactGroupCalibration(math.exp(lo), exact_group_delta(math.exp(lo), q, steps, k, target_epsilon),
                                         evaluations, time.perf_counter() - started)
        hi, lo = lo, lo - math.log(2.0)
    sigma = _feasible_root(excess, lo, hi)
    width = grid_width(sigma, q, steps, k)
    finer = max(FINE_DISCRETIZATION, width * _MAX_GRID_POINTS / _MAX_FINE_POINTS)
    hi = math.log(sigma)
    # A finer pessimistic grid is never expected to be looser; if it were, keep the coarse root.
    if finer < width and excess(hi, finer) <= 0:
        lo = hi - 0.02
        while excess(lo, finer) <= 0 and lo > math.log(1e-2):
            hi, lo = lo, lo - 0.02
        sigma = math.exp(lo) if excess(lo, finer) <= 0 else _feasible_root(lambda x: excess(x, finer), lo, hi)
        width = finer
    else:
        width = None
    return ExactGroupCalibration(noise_multiplier=sigma,
                                 delta=exact_group_delta(sigma, q, steps, k, target_epsilon, discretization=width),
                                 evaluations=evaluations, seconds=time.perf_counter() - started,
                                 discretization=width)


def _feasible_root(excess, lo: float, hi: float) -> float:
    """Brent's root of ``excess`` over log sigma in [lo, hi] (excess(lo) > 0 >= excess(hi)),
    moved up until feasible (excess <= 0)."""
    from scipy import optimize

    sigma = math.exp(optimize.brentq(excess, lo, hi, xtol=1e-4))
    while excess(math.log(sigma)) > 0:
        sigma *= 1.0 + 1e-5
    return sigma

"""Composition across deletion requests: the certificate against an adversary who sees
every deployed model of a stream, not only the last (docs/requests.md).

Pure functions of numbers (numpy / scipy only). Each request r is certified on its own
as (eps_r, delta_r); the models deployed after requests 1..k, seen together, need the
adaptive composition of those k guarantees. Three rules, each valid for adaptive
composition (each request's guarantee holds given everything deployed before it):

* ``basic_composition``: (sum eps_r, sum delta_r) for any (eps, delta) guarantees
  (Dwork & Roth 2014, Thm 3.16; it holds in their k-fold adaptive composition
  experiment, Sec. 3.5.2). Used for Model Clipping, whose accountant gives one
  (eps, delta) pair per request.
* ``linear_rdp_composition``: Renyi DP adds up order by order (Mironov 2017, Prop. 1), so
  k PABI phases with RDP(alpha) = alpha * eps_R,r compose to alpha * sum_r eps_R,r, which is
  converted once (the same conversion as a single request, rdp.linear_rdp_to_dp).
* ``gaussian_composition``: k Gaussian mechanisms with sensitivity / sigma = mu_r compose
  exactly to one with mu = sqrt(sum mu_r^2) (Dong, Roth & Su 2022, Cor. 3.3); its
  epsilon at a given delta is the smallest eps with theta_eps(mu) <= delta.

Every sum is rounded up (never below the exact sum of the floats), and every epsilon is
the upper end of a checked bracket, so a printed value never understates the bound.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

from src.privacy.gaussian import theta_eps_upper
from src.privacy.rdp import rdp_to_dp
from src.privacy.rounding import round_up

__all__ = ["sum_up", "basic_composition", "linear_rdp_composition", "gaussian_composition"]


def _check_finite_non_negative(name: str, values) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite numbers >= 0, got {name}={list(values)!r}")
        out.append(float(v))
    if not out:
        raise ValueError(f"{name} must not be empty (compose at least one request)")
    return out


def sum_up(values: Sequence[float]) -> float:
    """The sum of floats, rounded towards +inf: the exact rational sum, then the float at
    or above it (a correctly rounded sum can lie half an ulp below the exact one)."""
    exact = sum((Fraction(v) for v in values), Fraction(0))
    nearest = float(exact)
    return nearest if Fraction(nearest) >= exact else math.nextafter(nearest, math.inf)


def basic_composition(epsilons: Sequence[float], deltas: Sequence[float]) -> tuple[float, float]:
    """(sum eps_r, sum delta_r), each sum rounded up; delta capped at 1 (Dwork & Roth 2014,
    Thm 3.16, also for adaptively chosen mechanisms)."""
    epsilons = _check_finite_non_negative("epsilons", epsilons)
    deltas = _check_finite_non_negative("deltas", deltas)
    if len(epsilons) != len(deltas):
        raise ValueError(f"one delta per epsilon: got {len(epsilons)} epsilons and {len(deltas)} deltas")
    return sum_up(epsilons), min(1.0, sum_up(deltas))


def linear_rdp_composition(epsilon_renyis: Sequence[float], delta: float) -> tuple[float, float]:
    """(eps, alpha) at ``delta`` of mechanisms with RDP(alpha) = alpha * eps_R,r for every
    alpha > 1, composed: RDP(alpha) = alpha * sum_r eps_R,r (Mironov 2017, Prop. 1), then
    eps = min_alpha [alpha S + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1)]
    (Balle et al. 2020 / Canonne-Kamath-Steinke Prop. 12), as for a single request, and
    rounded up by the same safety margin (src/privacy/rounding.py), so that one request
    composes to exactly its own certificate."""
    total = sum_up(_check_finite_non_negative("epsilon_renyis", epsilon_renyis))
    epsilon, alpha = rdp_to_dp(lambda alpha: total * alpha, delta)
    return round_up(epsilon), alpha


def gaussian_composition(mus: Sequence[float], delta: float) -> tuple[float, float]:
    """(eps, mu) of Gaussian mechanisms with sensitivity / sigma = mu_r, composed.

    mu = sqrt(sum mu_r^2) (Dong, Roth & Su 2022, Cor. 3.3: the composition of mu_r-GDP
    guarantees is sqrt(sum mu_r^2)-GDP, also adaptively), rounded up; eps is the smallest
    eps >= 0 with theta_eps(mu) <= delta (theta is decreasing in eps; its float64 upper bound
    is used, the safe side), found by bisection
    and returned at the upper end, where the inequality was checked."""
    mus = _check_finite_non_negative("mus", mus)
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must be a number in (0, 1), got delta={delta!r}")
    # One ulp up covers the rounding of the squares and of sqrt (each within half an ulp).
    mu = math.nextafter(math.sqrt(sum_up([math.nextafter(m * m, math.inf) for m in mus])), math.inf)
    if theta_eps_upper(0.0, mu) <= delta:
        return 0.0, mu
    lo, hi = 0.0, 1.0
    while theta_eps_upper(hi, mu) > delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):  # to adjacent floats
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if theta_eps_upper(mid, mu) > delta:
            lo = mid
        else:
            hi = mid
    return hi, mu

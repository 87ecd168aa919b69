"""Renyi differential privacy: the Gaussian mechanism's RDP and RDP -> (eps, delta).

Pure functions of numbers (numpy / scipy only).

Two conversions live here, and the difference between them is decision D3
(docs/differences.md):

* ``rdp_to_dp`` / ``linear_rdp_to_dp``: the correct one. A bound that holds for every
  order alpha, e.g. RDP(alpha) = alpha * eps_R for the PABI analysis, is converted with
  the Balle et al. 2020 / Canonne-Kamath-Steinke Prop. 12 formula, minimised over a
  continuous alpha > 1.
* ``upstream_rdp_to_dp``: the reference's, which plugs an alpha-independent eps_R into the
  same formula on a fixed grid of alphas; it gives eps ~ eps_R + 0.0036 and is kept only
  to reproduce the published numbers.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .rounding import below_target

__all__ = [
    "gaussian_rdp",
    "rdp_to_dp",
    "linear_rdp_to_dp",
    "upstream_rdp_to_dp",
    "calibrate_renyi_epsilon",
    "UPSTREAM_ALPHAS",
]

# The reference's grid of orders for its PABI conversion.
UPSTREAM_ALPHAS = np.linspace(1.001, 1000, 10000)

# Search range of alpha - 1 for the continuous minimisation (log-spaced scan).
_LOG_ALPHA_MINUS_ONE_RANGE = (math.log(1e-6), math.log(1e7))
_SCAN_POINTS = 1400


def _check_delta(delta) -> None:
    if not (isinstance(delta, (int, float, np.floating, np.integer)) and 0 < delta < 1):
        raise ValueError(f"delta must be a number in (0, 1), got delta={delta!r}")


def _check_epsilon_renyi(epsilon_renyi) -> None:
    if not (
        isinstance(epsilon_renyi, (int, float, np.floating, np.integer))
        and math.isfinite(epsilon_renyi)
        and epsilon_renyi >= 0
    ):
        raise ValueError(
            f"epsilon_renyi must be a finite number >= 0, got epsilon_renyi={epsilon_renyi!r}"
        )


def gaussian_rdp(alpha, sensitivity, sigma):
    """RDP of the Gaussian mechanism: alpha * sensitivity^2 / (2 sigma^2).

    Mironov 2017, "Renyi Differential Privacy", Table II.
    Accepts a float or a numpy array of orders alpha > 1.
    """
    alpha_arr = np.asarray(alpha, dtype=float)
    if np.any(np.isnan(alpha_arr)) or np.any(alpha_arr <= 1):
        raise ValueError(f"alpha must be > 1, got alpha={alpha!r}")
    if not (math.isfinite(sensitivity) and sensitivity >= 0):
        raise ValueError(f"sensitivity must be a finite number >= 0, got sensitivity={sensitivity!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got sigma={sigma!r}")
    value = alpha_arr * sensitivity**2 / (2.0 * sigma**2)
    return float(value) if np.ndim(alpha) == 0 else value


def _conversion_objective(rdp_values, alpha, delta):
    """eps(alpha) = RDP(alpha) + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1).

    Balle, Barthe, Gaboardi, Hsu, Sato 2020 / Canonne, Kamath, Steinke 2020, Prop. 12
    (also Asoodeh et al. 2020): (alpha, RDP(alpha))-RDP implies
    (eps(alpha), delta)-DP, for every alpha > 1.
    """
    return rdp_values + np.log1p(-1.0 / alpha) - (math.log(delta) + np.log(alpha)) / (alpha - 1.0)


def _evaluate_rdp(rdp_of_alpha: Callable, alphas: np.ndarray) -> np.ndarray:
    try:
        values = np.asarray(rdp_of_alpha(alphas), dtype=float)
        if values.shape == alphas.shape:
            return values
    except (TypeError, ValueError):
        pass
    return np.array([float(rdp_of_alpha(float(a))) for a in alphas])


def rdp_to_dp(rdp_of_alpha: Callable, delta) -> tuple[float, float]:
    """Convert an RDP curve to (eps, delta)-DP: min over continuous alpha > 1 of eps(alpha).

    eps(alpha) = rdp(alpha) + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1)
    (Balle et al. 2020 / Canonne-Kamath-Steinke Prop. 12). Every alpha gives a valid
    bound, so the result is always a valid certificate; the minimisation only makes it
    tight. It scans log(alpha - 1) on [log 1e-6, log 1e7] (1400 points), then refines
    the best bracket with bounded Brent to ~1e-12 in log(alpha - 1), so the returned
    epsilon is within ~1e-10 relative of the minimum for smooth, unimodal curves.
    A negative minimum is reported as 0 (any eps < 0 guarantee implies eps = 0).

    ``rdp_of_alpha`` maps alpha -> RDP(alpha); it may be vectorised (called with an
    array first) or scalar. Returns ``(epsilon, alpha_opt)``.
    """
    _check_delta(delta)
    u_grid = np.linspace(*_LOG_ALPHA_MINUS_ONE_RANGE, _SCAN_POINTS)
    alphas = 1.0 + np.exp(u_grid)
    objective = _conversion_objective(_evaluate_rdp(rdp_of_alpha, alphas), alphas, delta)
    objective = np.where(np.isnan(objective), np.inf, objective)
    best = int(np.argmin(objective))
    if not np.isfinite(objective[best]):
        return math.inf, float(alphas[best])
    lo = u_grid[max(best - 1, 0)]
    hi = u_grid[min(best + 1, len(u_grid) - 1)]

    def objective_at(u: float) -> float:
        alpha = 1.0 + math.exp(u)
        value = _conversion_objective(float(rdp_of_alpha(alpha)), alpha, delta)
        return math.inf if math.isnan(value) else float(value)

    from scipy import optimize  # imported here: it costs ~0.3 s at import time

    result = optimize.minimize_scalar(
        objective_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12, "maxiter": 500}
    )
    u_best, eps_best = float(u_grid[best]), float(objective[best])
    if result.fun < eps_best:
        u_best, eps_best = float(result.x), float(result.fun)
    return max(0.0, eps_best), 1.0 + math.exp(u_best)


def _linear_rdp_to_dp_with_order(epsilon_renyi, delta) -> tuple[float, float]:
    _check_epsilon_renyi(epsilon_renyi)
    slope = float(epsilon_renyi)
    return rdp_to_dp(lambda alpha: slope * alpha, delta)


def linear_rdp_to_dp(epsilon_renyi, delta) -> float:
    """(eps, delta)-DP of a mechanism with RDP(alpha) = alpha * eps_R for all alpha > 1.

    This is the correct conversion of the PABI bound (docs/differences.md#renyi-conversion): the Gaussian
    shifted-Renyi analysis (Feldman et al. 2018) bounds D_alpha <= alpha * eps_R, and
    eps = min_alpha [alpha eps_R + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1)]
    (Balle et al. 2020 / Canonne-Kamath-Steinke Prop. 12), minimised over continuous
    alpha by ``rdp_to_dp``. For eps_R = 1, delta = 1e-5 it is 7.077.
    """
    return _linear_rdp_to_dp_with_order(epsilon_renyi, delta)[0]


def upstream_rdp_to_dp(epsilon_renyi, delta, alphas=UPSTREAM_ALPHAS) -> float:
    """The reference's PABI conversion: eps_R treated as independent of alpha (D3).

    eps = min over alpha in ``alphas`` (default linspace(1.001, 1000, 10000)) of
    eps_R - (log delta + log alpha)/(alpha - 1) + log((alpha - 1)/alpha), in float64 and in
    the reference's order of operations. This is the Balle et al. 2020 / CKS Prop. 12
    formula applied as if RDP(alpha) = eps_R at every order, which is not what the PABI
    analysis proves; it is kept to reproduce the published epsilon (1.0036 for eps_R = 1,
    delta = 1e-5).
    """
    _check_epsilon_renyi(epsilon_renyi)
    _check_delta(delta)
    alphas = np.asarray(alphas, dtype=float)
    if alphas.size == 0 or np.any(alphas <= 1):
        raise ValueError(f"alphas must be a non-empty array of orders > 1, got alphas={alphas!r}")
    values = epsilon_renyi - (np.log(delta) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)
    return float(np.min(values))


def calibrate_renyi_epsilon(epsilon_target, delta) -> float:
    """The eps_R whose correct PABI conversion gives exactly ``epsilon_target``.

    Inverts ``linear_rdp_to_dp`` (Balle et al. 2020 / CKS Prop. 12 over continuous alpha,
    applied to RDP(alpha) = alpha * eps_R), which is continuous and increasing in eps_R.
    It aims at ``below_target(epsilon_target)`` (two safety margins under the target,
    src/privacy/rounding.py) and is solved by Brent's method to ~1e-15 relative, then
    rounded down until the resulting epsilon is <= that aim, so a certificate recomputed
    from the calibrated noise and rounded up never exceeds the target.
    For epsilon_target = 1, delta = 1e-5 it is about 0.031.
    """
    if not (
        isinstance(epsilon_target, (int, float, np.floating, np.integer))
        and math.isfinite(epsilon_target)
        and epsilon_target > 0
    ):
        raise ValueError(
            f"epsilon_target must be a finite number > 0, got epsilon_target={epsilon_target!r}"
        )
    _check_delta(delta)
    target = below_target(epsilon_target)
    if linear_rdp_to_dp(0.0, delta) >= target:
        raise ValueError(
            f"epsilon_target={epsilon_target!r} is not reachable at delta={delta!r}: even "
            f"eps_R = 0 converts to epsilon {linear_rdp_to_dp(0.0, delta)!r}"
        )

    def excess(epsilon_renyi: float) -> float:
        return linear_rdp_to_dp(epsilon_renyi, delta) - target

    hi = target
    while excess(hi) < 0:
        hi *= 2.0
    from scipy import optimize

    epsilon_renyi = optimize.brentq(excess, 0.0, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    while excess(epsilon_renyi) > 0:
        epsilon_renyi *= 1.0 - 1e-14
    return float(epsilon_renyi)

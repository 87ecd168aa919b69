"""The Gaussian mechanism: tail, hockey-stick divergence, noise calibration.

Everything here is a pure function of numbers (numpy / scipy, no torch).

The central quantity is theta_eps(r), the hockey-stick divergence between two unit
Gaussians whose means are r apart. It is the tight delta of the Gaussian mechanism
with sensitivity / sigma = r at a given epsilon, and it is the contraction coefficient
of the model-clipping accountant (contraction.py).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "gaussian_tail",
    "theta_eps",
    "log_theta_eps",
    "theta_eps_upper",
    "gaussian_epsilon",
    "classical_gaussian_sigma",
    "analytic_gaussian_sigma",
    "output_perturbation_sigma",
]


def _is_scalar(*values) -> bool:
    return all(np.ndim(v) == 0 for v in values)


def _as_output(value: np.ndarray, scalar: bool):
    return float(value) if scalar else value


def _check_epsilon(epsilon, *, allow_inf: bool = True) -> None:
    eps = np.asarray(epsilon, dtype=float)
    if np.any(np.isnan(eps)) or np.any(eps < 0) or (not allow_inf and np.any(np.isinf(eps))):
        expected = "a number >= 0" if allow_inf else "a finite number >= 0"
        raise ValueError(f"epsilon must be {expected}, got epsilon={epsilon!r}")


def _check_delta(delta) -> None:
    if not (isinstance(delta, (int, float, np.floating, np.integer)) and 0 < delta < 1):
        raise ValueError(f"delta must be a number in (0, 1), got delta={delta!r}")


def _check_sensitivity(sensitivity) -> None:
    if not (
        isinstance(sensitivity, (int, float, np.floating, np.integer))
        and math.isfinite(sensitivity)
        and sensitivity >= 0
    ):
        raise ValueError(
            f"sensitivity must be a finite number >= 0, got sensitivity={sensitivity!r}"
        )


def _check_radius(r) -> None:
    rad = np.asarray(r, dtype=float)
    if np.any(np.isnan(rad)) or np.any(rad < 0):
        raise ValueError(f"r (sensitivity / sigma) must be a number >= 0, got r={r!r}")


def gaussian_tail(x, *, upstream: bool = False):
    """Gaussian tail Q(x) = P[N(0, 1) > x] = erfc(x / sqrt 2) / 2.

    The default evaluates erfc through scipy's ``ndtr(-x)``, which keeps full relative
    accuracy far into the tail (down to ~1e-308). ``upstream=True`` evaluates the
    reference's ``(1 - erf(x / sqrt 2)) / 2``: it loses all relative accuracy once
    Q(x) < ~1e-16 and is exactly 0 for x > ~8.3. It exists only to replay the
    reference's numbers (its theta values exactly, its contraction trajectories to ~1e-13).

    Accepts floats or numpy arrays; returns the same kind.
    """
    scalar = _is_scalar(x)
    x = np.asarray(x, dtype=float)
    if upstream:
        value = (1.0 - special.erf(x / math.sqrt(2.0))) / 2.0
    else:
        value = special.ndtr(-x)
    return _as_output(value, scalar)


def _theta_upstream(epsilon: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Same expression, same order of operations as the reference's src/utils/dp.py.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = epsilon / r - r / 2.0
        b = epsilon / r + r / 2.0
        return gaussian_tail(a, upstream=True) - np.exp(epsilon) * gaussian_tail(b, upstream=True)


def _log_theta_accurate(epsilon: np.ndarray, r: np.ndarray) -> np.ndarray:
    """log theta on the interior 0 < r < inf, 0 <= epsilon < inf (no special cases)."""
    a = epsilon / r - r / 2.0
    b = epsilon / r + r / 2.0
    log_first = special.log_ndtr(-a)
    # log of e^eps Q(b) / Q(a) <= 0. Working with the ratio keeps the relative accuracy
    # of theta where the two terms nearly cancel (small r): each log-tail is accurate to
    # ~1e-16 relative, so the ratio's log is accurate to ~1e-16 * |log Q(a)| absolute.
    log_ratio = epsilon + special.log_ndtr(-b) - log_first
    # Rounding can push the ratio's log a hair above 0 where theta underflows anyway.
    log_ratio = np.minimum(log_ratio, 0.0)
    with np.errstate(divide="ignore"):
        return log_first + np.log(-np.expm1(log_ratio))


def _with_edges(epsilon, r, at_zero: float, at_one: float, interior):
    """Evaluate `interior(eps, r)` where 0 < r < inf and eps is finite; at r = 0 or
    eps = inf (theta = 0) return `at_zero`, at r = inf (theta = 1) `at_one`."""
    scalar = _is_scalar(epsilon, r)
    _check_epsilon(epsilon)
    _check_radius(r)
    eps, rad = np.broadcast_arrays(np.asarray(epsilon, dtype=float), np.asarray(r, dtype=float))
    out = np.empty(eps.shape, dtype=float)
    zero = (rad == 0) | np.isinf(eps)
    one = np.isinf(rad) & ~zero
    inside = ~(zero | one)
    out[zero] = at_zero
    out[one] = at_one
    if np.any(inside):
        out[inside] = interior(eps[inside], rad[inside])
    return _as_output(out, scalar)


def log_theta_eps(epsilon, r):
    """log theta_eps(r), accurate where theta itself underflows (see ``theta_eps``).

    theta_eps(r) = Q(eps/r - r/2) - e^eps Q(eps/r + r/2) is the hockey-stick divergence
    E_{e^eps}(N(0,1) || N(r,1)) (Balle & Wang 2018, analytic Gaussian mechanism, Thm 8).
    Returns -inf where theta = 0 (r = 0 or epsilon = inf) and 0 where theta = 1 (r = inf).
    """
    return _with_edges(epsilon, r, -np.inf, 0.0, _log_theta_accurate)


def theta_eps(epsilon, r, *, upstream: bool = False):
    """Hockey-stick divergence theta_eps(r) = E_{e^eps}(N(0,1) || N(r,1)).

    theta_eps(r) = Q(eps/r - r/2) - e^eps Q(eps/r + r/2), the exact delta(eps) of the
    Gaussian mechanism with sensitivity / sigma = r (Balle & Wang 2018, analytic
    Gaussian mechanism, Thm 8). Conventions at the edges: r = 0 -> 0 (identical
    distributions), r = inf -> 1, epsilon = inf -> 0.

    The default keeps its relative accuracy where the two terms nearly cancel
    (theta_0.1(0.01) = 7.857692771036772e-27) and deep in the tail (theta_2(0.1) ~ 3.7e-91):
    both terms are formed in log space (scipy ``log_ndtr``) and subtracted as
    Q(a) * (1 - exp(log-ratio)). Wherever theta is representable (> 1e-308) the relative
    error is below ~3e-12 / r (e.g. 1e-11 at r = 0.01 above; ~1e-15 for r >= 1).

    ``upstream=True`` replays the reference's float64 formula with Q = (1 - erf)/2,
    which returns 0 (or garbage at the 1e-17 level) once the terms underflow; it is
    only for reproducing the reference's numbers.

    Accepts floats or numpy arrays (broadcast together); returns the same kind.
    """
    interior = _theta_upstream if upstream else (lambda eps, rad: np.exp(_log_theta_accurate(eps, rad)))
    return _with_edges(epsilon, r, 0.0, 1.0, interior)


# Relative error of ``theta_eps`` as implemented, against mpmath at 60 digits over
# r in [1e-4, 30], epsilon in [0, 50] wherever theta > 1e-200: at most 2.9e-12 / r
# (tests/test_privacy_gaussian.py checks this bound). Twice that, plus a floor for r >= 1.
_THETA_ERROR_OVER_R = 6e-12
_THETA_ERROR_FLOOR = 2e-12
# Deeper in the tail the error grows with the size of the logarithms the value is formed
# from: log Q(a) (absolute error ~ u |log Q(a)|) and the log-ratio eps + log Q(b) - log Q(a),
# whose absolute error ~ u (eps + |log Q(b)| + |log Q(a)|) is amplified by 1 / expm1(-ratio)
# in log(-expm1(ratio)) (~1 / r where the terms nearly cancel). Each term is taken
# _LOG_ERROR_ULPS times the float64 unit roundoff: against mpmath (80 digits, 3,000 random
# points with r in [1e-4, 40], epsilon in [0, 100]) the error beyond the first bound never
# needed more than 1.8 of these units, so 16 leaves a margin of about 9.
# tests/test_privacy_gaussian.py checks the whole bound against mpmath down to theta ~
# 1e-300, where the first bound alone fell short (by up to 6e-11).
_LOG_ERROR_ULPS = 16
_UNIT_ROUNDOFF = 2.0 ** -53
# Below the smallest normal float64 theta is subnormal: its absolute rounding error is
# half the smallest subnormal, 5e-324 covers it.
_SUBNORMAL_ERROR = 5e-324


def _log_theta_error(epsilon: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A bound on the absolute error of ``_log_theta_accurate`` from the logarithms it uses."""
    a = epsilon / r - r / 2.0
    b = epsilon / r + r / 2.0
    log_qa, log_qb = special.log_ndtr(-a), special.log_ndtr(-b)
    log_ratio = np.minimum(epsilon + log_qb - log_qa, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        amplification = 1.0 / np.expm1(-log_ratio)  # inf where the ratio is 1: theta is 0 there anyway
    scale = _LOG_ERROR_ULPS * _UNIT_ROUNDOFF
    return scale * (np.abs(log_qa) + (epsilon + np.abs(log_qb) + np.abs(log_qa)) * amplification)


def theta_eps_upper(epsilon, r):
    """An upper bound on the exact theta_eps(r), everywhere theta is computed: ``theta_eps``
    raised by its measured relative error (6e-12 / r + 2e-12), by the error its logarithms
    can carry deep in the tail (``_log_theta_error``) and, for subnormal values, by their
    absolute rounding. Certificates and calibrations built on theta use this, so that
    float64 rounding can only make them more conservative."""
    scalar = _is_scalar(epsilon, r)
    value = np.asarray(theta_eps(epsilon, r), dtype=float)
    eps, rad = np.broadcast_arrays(np.asarray(epsilon, dtype=float), np.asarray(r, dtype=float))
    exactly_zero = (rad == 0) | np.isinf(eps)  # identical distributions, or no epsilon to pay
    inside = (value > 0) & (value < 1) & ~exactly_zero & np.isfinite(rad)
    log_error = np.zeros(value.shape)
    if np.any(inside):
        log_error[inside] = _log_theta_error(eps[inside], rad[inside])
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        factor = (1.0 + _THETA_ERROR_OVER_R / rad + _THETA_ERROR_FLOOR) * np.exp(log_error)
        # subnormal or underflowed to 0 (theta > 0 all the same): add their absolute rounding
        upper = value * factor + np.where(value < np.finfo(float).tiny, 2 * _SUBNORMAL_ERROR, 0.0)
    upper = np.where(np.isfinite(upper), np.minimum(upper, 1.0), 1.0)
    upper = np.where(exactly_zero, 0.0, upper)
    upper = np.where(np.isnan(value), value, upper)  # theta not computable (r subnormal): no bound, refused upstream
    return float(upper) if scalar else upper


def gaussian_epsilon(r, delta) -> float:
    """The exact epsilon at `delta` of the Gaussian mechanism with sensitivity / sigma = r
    (equivalently of mu-GDP with mu = r): the epsilon with theta_eps(r) = delta, 0 when
    theta_0(r) <= delta already. Used to read an audit's mu as an epsilon, and the exact
    epsilon of an audited instance from its mean shift and its noise."""
    from scipy import optimize  # imported here, as in analytic_gaussian_sigma (~0.3 s)

    _check_delta(delta)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"r must be a finite number >= 0, got r={r!r}")
    if r == 0 or theta_eps(0.0, r) <= delta:
        return 0.0
    hi = r * r / 2 + r * math.sqrt(2 * math.log(1 / delta)) + 1.0  # theta_hi(r) < delta (Gaussian tail)
    while theta_eps(hi, r) > delta:
        hi *= 2
    return float(optimize.brentq(lambda eps: theta_eps(eps, r) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


def classical_gaussian_sigma(epsilon, delta, sensitivity) -> float:
    """Classical Gaussian mechanism: sigma = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon.

    Dwork & Roth 2014, Thm A.1. The theorem is stated for epsilon in (0, 1); the
    reference applies it at epsilon = 1 as well, and so does this function (for
    epsilon >= 1 prefer ``analytic_gaussian_sigma``, which is always valid).
    """
    _check_epsilon(epsilon, allow_inf=False)
    if epsilon == 0:
        raise ValueError("epsilon must be > 0 for the classical Gaussian mechanism, got epsilon=0")
    _check_delta(delta)
    _check_sensitivity(sensitivity)
    return float(sensitivity) * math.sqrt(2.0 * math.log(1.25 / delta)) / float(epsilon)


def analytic_gaussian_sigma(epsilon, delta, sensitivity) -> float:
    """Smallest sigma with theta_eps(sensitivity / sigma) <= delta, on the safe side.

    Analytic Gaussian mechanism (Balle & Wang 2018, Thm 8 / Alg. 1): the Gaussian
    mechanism with noise sigma is (eps, delta)-DP iff theta_eps(sensitivity/sigma) <= delta,
    and theta_eps is increasing in r, so the optimal sigma is sensitivity / r* with
    theta_eps(r*) = delta. r* is found by bracketing and Brent's method on
    log theta - log delta to ~1e-15 relative, then sigma is raised until
    ``theta_eps_upper`` (theta plus its rounding error) is <= delta: evaluated theta alone
    can sit a few 1e-15 below the exact value, which would put the exact delta above target.
    """
    _check_epsilon(epsilon)
    _check_delta(delta)
    _check_sensitivity(sensitivity)
    if sensitivity == 0 or math.isinf(epsilon):
        return 0.0
    epsilon = float(epsilon)
    log_delta = math.log(delta)

    def excess(r: float) -> float:
        return log_theta_eps(epsilon, r) - log_delta

    r_lo, r_hi = 1.0, 1.0
    while excess(r_lo) > 0:
        r_lo /= 2.0
    while excess(r_hi) < 0:
        r_hi *= 2.0
    if r_lo == r_hi:
        r_star = r_lo
    else:
        from scipy import optimize  # imported here: it costs ~0.3 s and most callers never need it

        r_star = optimize.brentq(excess, r_lo, r_hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    sigma = float(sensitivity) / r_star
    step = 1e-15
    while theta_eps_upper(epsilon, float(sensitivity) / sigma) > delta:
        sigma *= 1.0 + step
        step *= 2.0
    return sigma


def output_perturbation_sigma(
    epsilon, delta, init_model_clip, *, calibration: str = "classical"
) -> float:
    """Noise of output perturbation: the model lies in the L2 ball of radius C0, so any
    two models are at most 2*C0 apart and sensitivity = 2*C0 (the ball's diameter).

    ``calibration="classical"`` (the reference, D14) uses Dwork-Roth Thm A.1:
    sigma = 2 C0 sqrt(2 ln(1.25/delta)) / eps; ``"analytic"`` uses the analytic Gaussian
    mechanism (Balle & Wang 2018), the smallest sigma with theta_eps(2 C0/sigma) <= delta.
    """
    if not (
        isinstance(init_model_clip, (int, float, np.floating, np.integer))
        and math.isfinite(init_model_clip)
        and init_model_clip >= 0
    ):
        raise ValueError(
            f"init_model_clip must be a finite number >= 0, got init_model_clip={init_model_clip!r}"
        )
    if calibration == "classical":
        return classical_gaussian_sigma(epsilon, delta, 2.0 * init_model_clip)
    if calibration == "analytic":
        return analytic_gaussian_sigma(epsilon, delta, 2.0 * init_model_clip)
    raise ValueError(
        f"calibration must be 'classical' or 'analytic', got calibration={calibration!r}"
    )

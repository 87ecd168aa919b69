"""The float32 rounding of the noisy updates, as an extra shift per step.

Pure functions of numbers (numpy only). The analyses count exact arithmetic: a step maps
theta to psi(theta) + sigma xi. The model lives in float32, so every operation of a step
(adding the decay term, scaling by eta, subtracting, adding the noise) rounds each
coordinate to nearest: |fl(x) - x| <= 2^-24 |x| for a normal result, and <= 2^-150 (half
the smallest subnormal spacing) below, so for a vector ||fl(x) - x||_2 <= 2^-24 ||x||_2 +
sqrt(d) 2^-150. A step of ``operations`` roundings whose intermediate results all have norm
<= R therefore ends within ``operations`` (2^-24 R + sqrt(d) 2^-150) of the exact step.

Each of the two coupled runs (with and without the forget set) is off by that much, so their
distance grows by at most twice it per step on top of the analysed drift: the conservative
reading is an extra shift of 2 e per step (PABI's s_t, the contraction accountant's
distance). The bound needs R: Gradient Clipping does not project during its noisy phase,
so its iterates are bounded only with high probability, through the norm of the Gaussian
noise accumulated so far; the probability that the bound fails is added to delta.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FLOAT32_UNIT_ROUNDOFF",
    "FLOAT32_SUBNORMAL_HALF_SPACING",
    "rounding_error_bound",
    "gaussian_norm_bound",
    "noisy_iterate_norm_bound",
    "GRADIENT_CLIPPING_OPERATIONS",
    "gradient_clipping_rounding_shift",
]

FLOAT32_UNIT_ROUNDOFF = 2.0**-24
FLOAT32_SUBNORMAL_HALF_SPACING = 2.0**-150
# Relative slack for the float64 evaluation of these bounds (a few ulps, generously).
_SLACK = 1e-12


def _check(name, value, *, positive=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {name}={value!r}")
    return value


def rounding_error_bound(norm_bound, num_parameters, operations: int = 1) -> float:
    """An upper bound on ||computed - exact||_2 after ``operations`` float32 roundings of
    vectors of dimension ``num_parameters`` whose norms are all <= ``norm_bound``:
    operations (2^-24 R + sqrt(d) 2^-150), rounded up."""
    norm_bound = _check("norm_bound", norm_bound)
    d = _check("num_parameters", num_parameters, positive=True)
    if isinstance(operations, bool) or not isinstance(operations, (int, np.integer)) or operations < 1:
        raise ValueError(f"operations must be an integer >= 1, got operations={operations!r}")
    per = FLOAT32_UNIT_ROUNDOFF * norm_bound + math.sqrt(d) * FLOAT32_SUBNORMAL_HALF_SPACING
    return operations * per * (1 + _SLACK)


def gaussian_norm_bound(scale, num_parameters, tail) -> float:
    """r with P(||N(0, scale^2 I_d)||_2 > r) <= tail: scale (sqrt(d) + sqrt(2 log(1/tail)))
    (the norm is 1-Lipschitz, E||xi|| <= sqrt(d), Gaussian concentration; Boucheron,
    Lugosi, Massart 2013, Thm 5.6)."""
    scale = _check("scale", scale)
    d = _check("num_parameters", num_parameters, positive=True)
    tail = _check("tail", tail, positive=True)
    if tail >= 1:
        raise ValueError(f"tail must be in (0, 1), got tail={tail!r}")
    return scale * (math.sqrt(d) + math.sqrt(2.0 * math.log(1.0 / tail))) * (1 + _SLACK)


def noisy_iterate_norm_bound(start_radius, sigmas, eta, grad_clip, weight_decay, num_parameters, tail) -> float:
    """R with P(some iterate, or some step's noise sigma_t xi_t, has norm > R) <= tail, for
    theta_{t+1} = rho theta_t - eta clip(g_t, C1) + sigma_t xi_t from ||theta_0|| <= R0,
    rho = 1 - eta lambda in [0, 1]: ||theta_t|| <= rho^t R0 + eta C1 sum_{s<t} rho^s +
    ||N(0, v_t I)|| with v_{t+1} = rho^2 v_t + sigma_t^2, and sigma_t^2 <= v_{t+1}; a union
    bound over the 2T norms (tail / 2T each), exact arithmetic."""
    sigmas = np.asarray(sigmas, dtype=float)
    if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(np.isfinite(sigmas)) or np.any(sigmas < 0):
        raise ValueError(f"sigmas must be a non-empty 1-d array of finite numbers >= 0, got sigmas={sigmas!r}")
    start_radius, grad_clip = _check("start_radius", start_radius), _check("grad_clip", grad_clip)
    rho = 1.0 - _check("eta", eta, positive=True) * _check("weight_decay", weight_decay)
    if not 0 <= rho <= 1:
        raise ValueError(f"eta * weight_decay must be in [0, 1], got rho = 1 - eta * weight_decay = {rho!r}")
    per_unit = gaussian_norm_bound(1.0, num_parameters, tail / (2 * sigmas.size))
    largest, drift, variance, start = 0.0, 0.0, 0.0, start_radius
    for sigma in sigmas.tolist():
        start, drift, variance = rho * start, rho * drift + eta * grad_clip, rho * rho * variance + sigma * sigma
        largest = max(largest, start + drift + math.sqrt(variance) * per_unit)
    return max(largest, start_radius) * (1 + _SLACK)


# Roundings in one Gradient Clipping step (src/unlearning/gradient_clipping.py): the decay
# term added to the clipped gradient (u), eta u, the subtraction, sigma xi, the noise added.
GRADIENT_CLIPPING_OPERATIONS = 5


def gradient_clipping_rounding_shift(start_radius, sigmas, eta, grad_clip, weight_decay, num_parameters,
                                     tail) -> tuple[float, float]:
    """(extra shift per step, iterate bound R) for PABI. With probability >= 1 - tail every
    iterate of the float32 run and every step's noise has norm <= R; then one step of one run
    is within e of the exact step, the five roundings weighted by how they enter theta:
    u = clip(g) + lambda theta (norm <= C1 + lambda R) is rounded, then eta u (both errors
    scaled by eta), theta - eta u (norm <= R + eta (C1 + lambda R)), sigma xi (<= R) and
    the sum (<= R):
        e = 2^-24 (2 eta (C1 + lambda R) + (R + eta (C1 + lambda R)) + 2 R) + 5 sqrt(d) 2^-150.
    The two runs drift apart by 2 e more per step than the analysis counts: the shift.

    R accounts for the roundings' own drift: the exact-arithmetic bound plus the errors,
    contracted by rho, sum e rho^s <= e min(T, 1 / (1 - rho)); e is linear in R, so R is
    solved as a fixed point (refused when its slope is not below 1/2)."""
    sigmas = np.asarray(sigmas, dtype=float)
    eta, grad_clip = _check("eta", eta, positive=True), _check("grad_clip", grad_clip, positive=True)
    weight_decay = _check("weight_decay", weight_decay)
    exact = noisy_iterate_norm_bound(start_radius, sigmas, eta, grad_clip, weight_decay, num_parameters, tail)
    u = FLOAT32_UNIT_ROUNDOFF
    floor = GRADIENT_CLIPPING_OPERATIONS * math.sqrt(float(num_parameters)) * FLOAT32_SUBNORMAL_HALF_SPACING
    # e(R) = a R + b
    a = u * (3 * eta * weight_decay + 3)
    b = u * 3 * eta * grad_clip + floor
    rho = 1.0 - eta * weight_decay
    reach = float(sigmas.size) if rho == 1 else min(float(sigmas.size), 1.0 / (1.0 - rho))
    if a * reach >= 0.5:
        raise ValueError(f"{sigmas.size} float32 steps can drift by their roundings alone as far as the iterates "
                         f"reach (slope {a * reach:.3g}); no bound on the rounding follows")
    radius = (exact + reach * b) / (1 - a * reach) * (1 + _SLACK)
    return 2.0 * (a * radius + b) * (1 + _SLACK), radius

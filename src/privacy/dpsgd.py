"""DP-SGD baseline: RDP accounting of the Poisson-subsampled Gaussian, noise calibration,
and group privacy (docs/differences.md#group-privacy and #dp-sgd-calibration).

Pure functions of numbers (numpy / scipy only; no torch, and no dp_accounting at run
time: the accountant below re-implements dp-accounting 0.6.0's ``RdpAccountant`` for
``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`` composed ``steps`` times, and the
tests pin it to dp-accounting itself).

Why a re-implementation: dp-accounting evaluates the integer orders with a Python loop
over up to ~10,000 binomial terms per order, ~10-17 s per epsilon on the reference's
orders and ~2 minutes per calibration. Here the integer orders are one vectorised
log-sum-exp over all terms at once, and the fractional orders replay dp-accounting's
series (including its quirks: it sums the absolute values of the terms, an upper bound
on A_alpha) with the same floating-point operations.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "REFERENCE_ORDERS",
    "NoiseCalibration",
    "group_privacy_to_example",
    "group_privacy_to_group",
    "poisson_gaussian_rdp",
    "rdp_to_epsilon",
    "dpsgd_epsilon",
    "calibrate_noise_multiplier",
]

# The reference's orders: list(jnp.linspace(1.1, 10.9, 99)) + list(range(11, 10240, 50)).
# JAX (0.5.2, CPU, x64 disabled) computes that linspace in float32 as
# start * (1 - i/98) + stop * (i/98); the result differs from
# np.linspace(1.1, 10.9, 99, dtype=np.float32) in 71 of the 99 values (e.g. 2.0 comes out
# as 1.9999998807907104, so dp-accounting treats it as a fractional order). The values
# below are jnp's float32 outputs, written out exactly (each is a float32 widened to
# float64); only 10.0 is an integer.
_REFERENCE_LINSPACE_ORDERS = (
    1.100000023841858, 1.2000000476837158, 1.3000000715255737, 1.399999976158142, 1.5,
    1.600000023841858, 1.7000000476837158, 1.7999999523162842, 1.899999976158142, 1.9999998807907104,
    2.0999999046325684, 2.1999998092651367, 2.299999952316284, 2.3999998569488525, 2.5,
    2.5999999046325684, 2.6999998092651367, 2.799999952316284, 2.8999998569488525, 2.999999761581421,
    3.0999999046325684, 3.1999998092651367, 3.299999713897705, 3.3999996185302734, 3.499999761581421,
    3.5999996662139893, 3.6999998092651367, 3.799999952316284, 3.8999998569488525, 3.999999761581421,
    4.09999942779541, 4.199999809265137, 4.299999713897705, 4.399999618530273, 4.5,
    4.599999904632568, 4.699999809265137, 4.799999713897705, 4.899999618530273, 4.999999523162842,
    5.099999904632568, 5.1999993324279785, 5.299999713897705, 5.399999618530273, 5.499999523162842,
    5.59999942779541, 5.6999993324279785, 5.799999713897705, 5.899999618530273, 5.999999523162842,
    6.09999942779541, 6.199999809265137, 6.299999237060547, 6.399999618530273, 6.499999523162842,
    6.59999942779541, 6.6999993324279785, 6.799999713897705, 6.899999141693115, 6.999999523162842,
    7.09999942779541, 7.1999993324279785, 7.299999713897705, 7.399999141693115, 7.499999523162842,
    7.59999942779541, 7.6999993324279785, 7.799999237060547, 7.899999618530273, 7.999999046325684,
    8.09999942779541, 8.19999885559082, 8.299999237060547, 8.399998664855957, 8.5,
    8.59999942779541, 8.69999885559082, 8.799999237060547, 8.899999618530273, 8.999999046325684,
    9.09999942779541, 9.19999885559082, 9.299999237060547, 9.399999618530273, 9.499999046325684,
    9.599998474121094, 9.699999809265137, 9.799999237060547, 9.899998664855957, 10.0,
    10.09999942779541, 10.19999885559082, 10.29999828338623, 10.399999618530273, 10.499999046325684,
    10.599998474121094, 10.69999885559082, 10.799999237060547, 10.899999618530273,
)
REFERENCE_ORDERS: tuple[float, ...] = _REFERENCE_LINSPACE_ORDERS + tuple(
    float(order) for order in range(11, 10240, 50)
)

# dp-accounting's cap on the fractional-order series (``_MAX_STEPS_LOG_A_FRAC``).
_MAX_TERMS_FRACTIONAL = 1000
_FRACTIONAL_CHUNK = 64
# Integer orders up to this are summed term by term exactly as dp-accounting does.
_SEQUENTIAL_MAX_ORDER = 512


@dataclass(frozen=True)
class NoiseCalibration:
    """Result of ``calibrate_noise_multiplier``.

    ``achieved_epsilon`` and ``order`` belong to the returned noise multiplier (the last
    feasible midpoint); ``seconds`` is the time the search took when first computed.
    """

    noise_multiplier: float
    achieved_epsilon: float
    order: float
    iterations: int
    seconds: float


# ---------------------------------------------------------------------------------------
# Group privacy
# ---------------------------------------------------------------------------------------


def _check_group_size(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (group size) must be an integer >= 1, got k={k!r}")
    return int(k)


def _check_epsilon_finite(name: str, value) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
    return float(value)


def _check_delta_open(name: str, value) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and 0 < value < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {name}={value!r}")
    return float(value)


def _log_expm1(x: float) -> float:
    """log(e^x - 1) for x > 0, without overflow for large x or cancellation for small x."""
    return x + math.log(-math.expm1(-x))


def _check_rule(rule: str) -> None:
    if rule not in ("tight", "upstream"):
        raise ValueError(f"rule must be 'tight' or 'upstream', got rule={rule!r}")


_LOG_SMALLEST_DELTA = math.log(1e-300)


def group_privacy_to_example(eps_group, delta_group, k, *, rule: str = "tight") -> tuple[float, float]:
    """Per-example (eps1, delta1) that guarantees (eps_k, delta_k) for groups of size k.

    ``rule="tight"``: group privacy (Dwork & Roth 2014 Thm 2.2 for delta = 0; by induction
    over the k changed records the delta terms add up to a geometric sum): (eps1, delta1)-DP implies
    (k eps1, delta1 (e^(k eps1) - 1)/(e^eps1 - 1))-DP for groups of k, inverted as
    eps1 = eps_k / k, delta1 = delta_k (e^eps1 - 1)/(e^(k eps1) - 1) (computed in log space).

    ``rule="upstream"``: the reference's delta1 = exp(ln delta_k + (eps1 - 1) - (k eps1 - 1))
    = delta_k e^(-(k-1) eps1), written exactly as the reference does. It omits the
    geometric sum, so it is too large by a factor 5.02 for k = 225, eps_k = 50 (D4).
    """
    eps_group = _check_epsilon_finite("eps_group", eps_group)
    delta_group = _check_delta_open("delta_group", delta_group)
    k = _check_group_size(k)
    _check_rule(rule)
    eps1 = eps_group / k
    if rule == "upstream":
        return eps1, math.exp(math.log(delta_group) + (eps1 - 1) - (eps1 * k - 1))
    if k == 1:
        return eps1, delta_group
    if eps1 == 0:
        # limit of (e^eps1 - 1)/(e^(k eps1) - 1) as eps1 -> 0
        return eps1, delta_group / k
    log_delta1 = math.log(delta_group) + _log_expm1(eps1) - _log_expm1(k * eps1)
    if log_delta1 < _LOG_SMALLEST_DELTA:
        # e^-eps_group shrinks delta1 below float64: an accountant at delta 0 has no answer
        largest = (_LOG_SMALLEST_DELTA - math.log(delta_group)) * -k / (k - 1)
        raise ValueError(f"epsilon {eps_group:g} for a group of {k}: the group lemma's per-example delta, "
                         f"delta (e^(eps/k) - 1) / (e^eps - 1) = 10^{log_delta1 / math.log(10):.0f}, is below the "
                         f"smallest delta an accountant can represent (1e-300); use a group epsilon below about "
                         f"{largest:.0f}")
    return eps1, math.exp(log_delta1)


def group_privacy_to_group(eps1, delta1, k, *, rule: str = "tight") -> tuple[float, float]:
    """(eps_k, delta_k) for groups of size k implied by per-example (eps1, delta1)-DP.

    ``rule="tight"``: eps_k = k eps1, delta_k = delta1 (e^(k eps1) - 1)/(e^eps1 - 1) = delta1
    sum_{i<k} e^(i eps1) (group privacy, Dwork & Roth 2014 Thm 2.2 extended to delta by
    induction over the k records). ``rule="upstream"``:
    the reference's delta_k = exp(ln delta1 + (k eps1 - 1) - (eps1 - 1)) (D4). The result
    can exceed 1 (a vacuous guarantee); it is returned as is.
    """
    eps1 = _check_epsilon_finite("eps1", eps1)
    delta1 = _check_delta_open("delta1", delta1)
    k = _check_group_size(k)
    _check_rule(rule)
    if rule == "upstream":
        return k * eps1, math.exp(math.log(delta1) + (k * eps1 - 1) - (eps1 - 1))
    if k == 1:
        return eps1, delta1
    if eps1 == 0:
        return 0.0, delta1 * k
    return k * eps1, math.exp(math.log(delta1) + _log_expm1(k * eps1) - _log_expm1(eps1))


# ---------------------------------------------------------------------------------------
# RDP of the Poisson-subsampled Gaussian (Mironov, Talwar, Zhang 2019)
# ---------------------------------------------------------------------------------------


def _log_add(logx: float, logy: float) -> float:
    """log(e^x + e^y), the same operations as dp-accounting's ``_log_add``."""
    a, b = min(logx, logy), max(logx, logy)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


@functools.lru_cache(maxsize=8)
def _integer_order_terms(integer_orders: tuple[int, ...]):
    """Order-only parts of the binomial expansion of A_alpha, for all integer orders at once.

    For order alpha the terms are i = 0..alpha; they are laid end to end, one segment per
    order, so a single vectorised pass (and ``reduceat``) covers every order.
    """
    alphas = np.array(integer_orders, dtype=np.int64)
    lengths = alphas + 1
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    segment = np.repeat(np.arange(len(alphas)), lengths)
    i = (np.arange(int(lengths.sum())) - starts[segment]).astype(float)
    alpha = alphas[segment].astype(float)
    # log binomial coefficient, as dp-accounting's _log_comb(alpha, i)
    log_comb = special.gammaln(alpha + 1) - special.gammaln(i + 1) - special.gammaln(alpha - i + 1)
    return starts, lengths, segment, i, alpha - i, log_comb, i * i - i


def _log_a_integer_orders(q: float, sigma: float, integer_orders: tuple[int, ...]) -> np.ndarray:
    """log A_alpha for integer alpha (Mironov, Talwar, Zhang 2019, Sec. 3.2):
    A_alpha = sum_{i=0}^{alpha} C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i)/(2 sigma^2)).

    The terms use the same floating-point expressions as dp-accounting's
    ``_compute_log_a_int``, all orders in one vectorised pass. For alpha <= 512 they are
    then summed by the same sequential log-add, so the result is dp-accounting's to the
    last bit: there log A_alpha can be tiny (~1e-8) and is itself only accurate to
    ~1e-18 absolute, which a different summation order would turn into ~1e-10 relative
    differences. Larger orders (most of the work) use a per-order log-sum-exp, whose
    rounding is negligible next to their larger log A_alpha (~1e-14 relative).
    """
    starts, lengths, segment, i, alpha_minus_i, log_comb, quadratic = _integer_order_terms(integer_orders)
    # log_comb + i log q + (alpha - i) log(1 - q) + (i^2 - i)/(2 sigma^2), left to right as
    # dp-accounting adds them (IEEE addition is commutative, so in-place order is exact)
    log_terms = i * math.log(q)
    log_terms += log_comb
    scratch = alpha_minus_i * math.log1p(-q)
    log_terms += scratch
    np.divide(quadratic, 2 * (sigma**2), out=scratch)
    log_terms += scratch
    peak = np.maximum.reduceat(log_terms, starts)
    np.subtract(log_terms, peak[segment], out=scratch)
    np.exp(scratch, out=scratch)
    log_a = peak + np.log(np.add.reduceat(scratch, starts))
    for n, alpha in enumerate(integer_orders):
        if alpha <= _SEQUENTIAL_MAX_ORDER:
            exact = -math.inf
            for term in log_terms[starts[n] : starts[n] + lengths[n]].tolist():
                exact = _log_add(exact, term)
            log_a[n] = exact
    return log_a


def _log_a_fractional_order(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha, as dp-accounting 0.6.0's ``_compute_log_a_frac``.

    Mironov, Talwar, Zhang 2019, Sec. 3.3: A_alpha split at z0 = sigma^2 log(1/q - 1) + 1/2
    into two series. Like dp-accounting, it adds the absolute values of the terms (an
    upper bound on A_alpha, slightly conservative) and stops once both series are
    decreasing and their latest terms are e^-30 below the total; it gives up (inf, order
    excluded) after 1000 terms. Terms are computed in vectorised chunks with the same
    floating-point operations; the stopping rule runs term by term as in dp-accounting.
    """
    log_q = math.log(q)
    log1mq = math.log1p(-q)
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    two_sigma_sq = 2 * (sigma**2)
    erfc_scale = math.sqrt(2) * sigma
    log_half, log_two, sqrt_two = math.log(0.5), math.log(2), 2**0.5
    log_a0 = log_a1 = -math.inf
    last_s0 = last_s1 = -math.inf
    for first in range(0, _MAX_TERMS_FRACTIONAL, _FRACTIONAL_CHUNK):
        i = np.arange(first, min(first + _FRACTIONAL_CHUNK, _MAX_TERMS_FRACTIONAL), dtype=float)
        log_coef = special.gammaln(alpha + 1) - special.gammaln(i + 1) - special.gammaln(alpha - i + 1)
        j = alpha - i
        log_t0 = log_coef + i * log_q + j * log1mq
        log_t1 = log_coef + j * log_q + i * log1mq
        log_e0 = log_half + (log_two + special.log_ndtr(-((i - z0) / erfc_scale) * sqrt_two))
        log_e1 = log_half + (log_two + special.log_ndtr(-((z0 - j) / erfc_scale) * sqrt_two))
        log_s0 = (log_t0 + (i * i - i) / two_sigma_sq + log_e0).tolist()
        log_s1 = (log_t1 + (j * j - j) / two_sigma_sq + log_e1).tolist()
        for s0, s1 in zip(log_s0, log_s1):
            log_a0 = _log_add(log_a0, s0)
            log_a1 = _log_add(log_a1, s1)
            total = _log_add(log_a0, log_a1)
            if s0 < last_s0 and s1 < last_s1 and max(s0, s1) < total - 30:
                return total
            last_s0, last_s1 = s0, s1
    return math.inf


def _check_orders(orders) -> tuple[float, ...]:
    orders = tuple(float(order) for order in orders)
    if not orders or any(math.isnan(order) or order <= 1 for order in orders):
        raise ValueError(f"orders must be a non-empty sequence of Renyi orders > 1, got orders={orders!r}")
    return orders


def _check_sampling(q, noise_multiplier, steps) -> None:
    if not (isinstance(q, (int, float, np.floating, np.integer)) and 0 <= q <= 1):
        raise ValueError(f"q (sampling rate) must be a number in [0, 1], got q={q!r}")
    if not (isinstance(noise_multiplier, (int, float, np.floating, np.integer)) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier must be a number >= 0, got noise_multiplier={noise_multiplier!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got steps={steps!r}")


def poisson_gaussian_rdp(q, noise_multiplier, steps, orders) -> np.ndarray:
    """RDP at each order of ``steps`` compositions of the Poisson-subsampled Gaussian.

    RDP(alpha) = steps * log(A_alpha) / (alpha - 1) (Mironov, Talwar, Zhang 2019;
    composition: Mironov 2017 Prop. 1), add-or-remove-one neighbours. Reproduces
    dp-accounting 0.6.0's ``RdpAccountant`` composed with
    ``PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))`` ``steps`` times,
    special cases included: q = 0 -> 0; noise_multiplier = 0 or alpha = inf -> inf;
    q = 1 -> alpha / (2 sigma^2) per step; integral alpha -> the exact binomial sum;
    other alpha -> dp-accounting's absolute-value series. Orders must be > 1
    (dp-accounting returns meaningless values at alpha <= 1; refused here).
    """
    _check_sampling(q, noise_multiplier, steps)
    orders = _check_orders(orders)
    q, sigma = float(q), float(noise_multiplier)
    per_step = np.empty(len(orders))
    integer_positions = [n for n, order in enumerate(orders) if order.is_integer()]
    for n, alpha in enumerate(orders):
        if q == 0:
            per_step[n] = 0.0
        elif math.isinf(alpha) or sigma == 0:
            per_step[n] = math.inf
        elif q == 1.0:
            per_step[n] = alpha / (2 * sigma**2)
        elif not alpha.is_integer():
            per_step[n] = _log_a_fractional_order(q, sigma, alpha) / (alpha - 1)
    if 0 < q < 1 and sigma > 0 and integer_positions:
        integer_orders = tuple(int(orders[n]) for n in integer_positions)
        log_a = _log_a_integer_orders(q, sigma, integer_orders)
        per_step[integer_positions] = log_a / (np.array(integer_orders, dtype=float) - 1)
    return steps * per_step


def rdp_to_epsilon(rdp, orders, delta) -> tuple[float, float]:
    """(epsilon, optimal order) from RDP values, exactly as dp-accounting's ``compute_epsilon``.

    eps(alpha) = rdp + log1p(-1/alpha) - log(delta * alpha)/(alpha - 1) (Balle et al. 2020 /
    Canonne-Kamath-Steinke Prop. 12), minimised over the given orders, with
    dp-accounting's rules: rdp < 0 -> 0; the KL bound delta <= sqrt(1 - e^-rdp) gives 0
    when delta^2 + expm1(-rdp) > 0; orders <= 1.01 are unusable (inf); the first
    minimum wins; the result is max(0, eps). delta = 0 gives 0 if all rdp are 0, else inf.
    One deliberate difference: an order alpha = inf (eps = nan there) counts as eps = inf,
    where dp-accounting would return 0.
    """
    if not (isinstance(delta, (int, float, np.floating, np.integer)) and 0 <= delta < 1):
        raise ValueError(f"delta must be a number in [0, 1), got delta={delta!r}")
    rdp = [float(r) for r in np.asarray(rdp, dtype=float).ravel()]
    orders = [float(a) for a in np.asarray(orders, dtype=float).ravel()]
    if len(orders) != len(rdp) or not orders:
        raise ValueError(
            f"rdp and orders must be non-empty and of equal length, got {len(rdp)} and {len(orders)}"
        )
    if delta == 0:
        return (0.0, 0.0) if all(r == 0 for r in rdp) else (math.inf, 0.0)
    epsilons = []
    for alpha, r in zip(orders, rdp):
        if alpha < 1:
            raise ValueError(f"Renyi orders must be >= 1, got order {alpha!r}")
        if r < 0:
            epsilon = 0.0
        elif delta**2 + math.expm1(-r) > 0:
            epsilon = 0.0
        elif alpha > 1.01:
            epsilon = r + math.log1p(-1 / alpha) - math.log(delta * alpha) / (alpha - 1)
        else:
            epsilon = math.inf
        # An infinite order gives inf/inf = nan here; dp-accounting would pick that nan
        # and report max(0, nan) = 0. Such an order certifies nothing: count it as inf.
        epsilons.append(math.inf if math.isnan(epsilon) else epsilon)
    best = int(np.argmin(epsilons))
    return max(0.0, epsilons[best]), orders[best]


def _dpsgd_epsilon_and_order(q, noise_multiplier, steps, delta, orders) -> tuple[float, float]:
    return rdp_to_epsilon(poisson_gaussian_rdp(q, noise_multiplier, steps, orders), orders, delta)


def dpsgd_epsilon(q, noise_multiplier, steps, delta, orders=REFERENCE_ORDERS) -> float:
    """epsilon of DP-SGD: ``steps`` Poisson-subsampled Gaussian steps with sampling rate q,
    RDP accounting (Mironov, Talwar, Zhang 2019) and the Balle et al. 2020 / CKS Prop. 12
    conversion over ``orders``; equal to dp-accounting's ``RdpAccountant.get_epsilon``.
    """
    return _dpsgd_epsilon_and_order(q, noise_multiplier, steps, delta, orders)[0]


# ---------------------------------------------------------------------------------------
# Noise calibration (the original code's bisection)
# ---------------------------------------------------------------------------------------

_BISECTION_LOW, _BISECTION_HIGH = 0.01, 1e5
_EPSILON_TOLERANCE = 1e-4
_MIDPOINT_TOLERANCE = 1e-5


def calibrate_noise_multiplier(
    target_epsilon, target_delta, sampling_rate, steps, orders=REFERENCE_ORDERS
) -> NoiseCalibration:
    """Noise multiplier of DP-SGD for (target_epsilon, target_delta), by the reference's
    bisection (``Trainer._compute_noise_multiplier``, the original code) over
    ``dpsgd_epsilon`` (RDP of the Poisson-subsampled Gaussian, Mironov et al. 2019):

    low = 0.01, high = 1e5, eps = inf; while |eps - target| > 1e-4: mid = (low + high)/2,
    eps = epsilon(mid); if eps <= target then high = mid and sigma = mid, else low = mid;
    stop when the next midpoint moves by less than 1e-5. Returns the last *feasible*
    midpoint (its epsilon is <= target). Raises ValueError if no midpoint was feasible.

    Results are cached in-process per (target_epsilon, target_delta, sampling_rate,
    steps, orders).
    """
    _check_epsilon_finite("target_epsilon", target_epsilon)
    if target_epsilon == 0:
        raise ValueError("target_epsilon must be > 0, got target_epsilon=0")
    _check_delta_open("target_delta", target_delta)
    if not (isinstance(sampling_rate, (int, float, np.floating, np.integer)) and 0 < sampling_rate <= 1):
        raise ValueError(f"sampling_rate must be a number in (0, 1], got sampling_rate={sampling_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got steps={steps!r}")
    return _calibrate_cached(
        float(target_epsilon), float(target_delta), float(sampling_rate), int(steps), _check_orders(orders)
    )


@functools.lru_cache(maxsize=64)
def _calibrate_cached(
    target_epsilon: float, target_delta: float, sampling_rate: float, steps: int, orders: tuple[float, ...]
) -> NoiseCalibration:
    started = time.perf_counter()
    low, high = _BISECTION_LOW, _BISECTION_HIGH
    epsilon = math.inf
    feasible: tuple[float, float, float] | None = None
    iterations = 0
    while abs(epsilon - target_epsilon) > _EPSILON_TOLERANCE:
        mid = (low + high) / 2
        epsilon, order = _dpsgd_epsilon_and_order(sampling_rate, mid, steps, target_delta, orders)
        iterations += 1
        if epsilon <= target_epsilon:
            high = mid
            feasible = (mid, epsilon, order)
        else:
            low = mid
        if abs((low + high) / 2 - mid) < _MIDPOINT_TOLERANCE:
            break
    if feasible is None:
        raise ValueError(
            f"no noise multiplier in [{_BISECTION_LOW}, {_BISECTION_HIGH}] reaches "
            f"target_epsilon={target_epsilon!r} at target_delta={target_delta!r} "
            f"(sampling_rate={sampling_rate!r}, steps={steps!r})"
        )
    noise_multiplier, achieved, order = feasible
    return NoiseCalibration(
        noise_multiplier=noise_multiplier,
        achieved_epsilon=achieved,
        order=order,
        iterations=iterations,
        seconds=time.perf_counter() - started,
    )

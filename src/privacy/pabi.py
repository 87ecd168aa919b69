"""Gradient Clipping certificate: privacy amplification by iteration (PABI).

Pure functions of numbers (numpy only). Notation of the original code:

* C0 = init_model_clip, the radius of the initial projection; D = 2 * radius (diameter)
* C1 = grad_clip, eta = learning rate, lambda = weight_decay, rho = 1 - eta * lambda
* T noisy steps theta_{t+1} = rho * theta_t - eta * clip(g_t) + sigma_t * xi_t
* B_T = D rho^T + (2 C1 / lambda)(1 - rho^T), the shift still to absorb after T steps

Two data sets that differ only in the forget set give two runs whose iterates start at
most D apart and drift apart by at most 2 eta C1 per step. The Gaussian shifted-Renyi
bound of PABI (Feldman, Mironov, Talwar, Thakurta 2018, contractive noisy iteration,
with the contraction rho of the weight-decayed step) gives, for every order alpha,
D_alpha(theta_T || theta'_T) <= alpha * eps_R. For a constant schedule

    eps_R = (1/2) B_T^2 / sum_{t<T} rho^(2(T-1-t)) sigma_t^2,

the closed form the sigma formulas solve. For sigmas that vary, that closed form spreads
the shift in a way that can leave a negative shift after some steps (the reference's
decreasing schedule does), which the analysis does not allow; ``pabi_renyi_epsilon``
solves the constrained program instead (see ``pabi_prefix_renyi_epsilons``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rdp import _linear_rdp_to_dp_with_order, upstream_rdp_to_dp
from .rounding import round_up

__all__ = [
    "PabiSteps",
    "PabiCertificate",
    "pabi_steps",
    "shift_bound",
    "pabi_sigmas",
    "pabi_renyi_epsilon",
    "pabi_certificate",
    "published_pabi_epsilon",
    "init_ball_radius",
    "running_renyi_epsilons",
    "pabi_prefix_renyi_epsilons",
    "scale_sigmas_to_renyi_epsilon",
]


@dataclass(frozen=True)
class PabiSteps:
    """Number of noisy steps T and how it was chosen (the original code's unlearn_setup)."""

    T: int
    T_base: int
    T_reg: int | None
    regularised: bool


@dataclass(frozen=True)
class PabiCertificate:
    """(epsilon, delta) of a PABI noisy phase, with the Renyi epsilon it came from.

    ``alpha`` is the optimal Renyi order of the correct conversion; it is None for the
    reference's conversion, which has no meaningful order.
    """

    epsilon: float
    delta: float
    epsilon_renyi: float
    alpha: float | None
    conversion: str


def _check_positive(name: str, value) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")


def _check_non_negative(name: str, value) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")


def _check_contraction(eta, weight_decay) -> None:
    # rho = 1 - eta * lambda must lie in (0, 1]: at rho <= 0 the weight-decayed step is no
    # longer the contraction the analysis assumes (rho^T would change sign).
    if eta * weight_decay >= 1:
        raise ValueError(
            f"eta * weight_decay must be < 1 (contraction rho = 1 - eta*lambda in (0, 1]), "
            f"got eta={eta!r}, weight_decay={weight_decay!r}"
        )


def _check_steps(T) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got T={T!r}")
    return int(T)


def pabi_steps(init_model_clip, grad_clip, eta, weight_decay) -> PabiSteps:
    """Number of PABI noisy steps T (reference ``unlearn_setup``, the original code).

    T_base = ceil(C0 / (C1 * eta)): after T_base steps the accumulated drift budget
    2 eta C1 T covers the initial diameter 2 C0. With weight decay lambda != 0,
    T_reg = ceil(ln(2 lambda C0 / C1) / (eta lambda)) is used instead when
    0 < T_reg < T_base. Both are evaluated with the reference's float64 expressions,
    so T equals the reference's for every shipped config (T_reg may be <= 0; then it is
    reported but not used).

    C0 = 0 would give T = 0, a noisy phase that the reference never ends (D22): refused.
    """
    _check_positive("init_model_clip", init_model_clip)
    _check_positive("grad_clip", grad_clip)
    _check_positive("eta", eta)
    _check_non_negative("weight_decay", weight_decay)
    T_base = math.ceil(init_model_clip / (grad_clip * eta))
    T_reg = None
    if weight_decay != 0:
        T_reg = math.ceil(math.log(2 * weight_decay * init_model_clip / grad_clip) / (eta * weight_decay))
    regularised = T_reg is not None and 0 < T_reg < T_base
    return PabiSteps(T=T_reg if regularised else T_base, T_base=T_base, T_reg=T_reg, regularised=regularised)


def _one_minus_rho_power_over_lambda(eta, weight_decay, power) -> float:
    """(1 - rho^power) / lambda with rho = 1 - eta*lambda; eta*power at lambda = 0.

    Written as -expm1(power * log1p(-eta*lambda)) / lambda so that small lambda does not
    lose digits to cancellation and lambda -> 0 is continuous.
    """
    if weight_decay == 0:
        return eta * power
    return -math.expm1(power * math.log1p(-eta * weight_decay)) / weight_decay


def shift_bound(diameter, grad_clip, eta, weight_decay, T) -> float:
    """B_T = D rho^T + (2 C1 / lambda)(1 - rho^T), rho = 1 - eta*lambda (the original code).

    The distance the two coupled runs (with and without the forget set) can be apart
    after T clipped, weight-decayed steps: the initial diameter D contracted T times,
    plus 2 eta C1 of fresh drift per step, each contracted by the later steps. For
    lambda = 0 this is the limit D + 2 C1 eta T. (Feldman et al. 2018 PABI shift budget.)
    """
    _check_non_negative("diameter", diameter)
    _check_positive("grad_clip", grad_clip)
    _check_positive("eta", eta)
    _check_non_negative("weight_decay", weight_decay)
    _check_contraction(eta, weight_decay)
    T = _check_steps(T)
    rho_T = math.exp(T * math.log1p(-eta * weight_decay))
    return diameter * rho_T + 2 * grad_clip * _one_minus_rho_power_over_lambda(eta, weight_decay, T)


def _sum_rho_squared_powers(eta, weight_decay, T) -> float:
    """sum_{k<T} rho^(2k) = (1 - rho^(2T)) / (1 - rho^2); T at lambda = 0."""
    if weight_decay == 0:
        return float(T)
    one_minus_rho_sq = eta * weight_decay * (2 - eta * weight_decay)
    return -math.expm1(2 * T * math.log1p(-eta * weight_decay)) / one_minus_rho_sq


def pabi_sigmas(
    T,
    diameter,
    grad_clip,
    eta,
    weight_decay,
    epsilon_renyi,
    *,
    schedule: str = "constant",
    lambda0: str = "unified",
) -> np.ndarray:
    """Noise sigma_t, t = 0..T-1, of the reference's formulas for a Renyi target eps_R.

    Feldman et al. 2018 PABI, Gaussian shifted-Renyi bound in closed form: eps_R =
    (1/2) B_T^2 / sum_t rho^(2(T-1-t)) sigma_t^2, solved for sigma (the original code):

    * ``schedule="constant"``: sigma^2 = B_T^2 / (2 eps_R sum_{k<T} rho^(2k)); at lambda = 0
      this is B_T^2 / (2 eps_R T) (docs/differences.md#pabi-lambda0: one formula for all lambda). Its
      certificate (``pabi_renyi_epsilon``) is eps_R.
    * ``schedule="decreasing"``: the reference's sigma_t^2 = B_T^2 / (2 eps_R T
      rho^(2(T-t-1))), each step carrying an equal share of the closed form. That share
      leaves a negative shift after early steps in most settings, so eps_R is NOT its
      bound: ``pabi_renyi_epsilon`` gives the valid one, and
      ``scale_sigmas_to_renyi_epsilon`` rescales the shape to a target. At lambda = 0
      (rho = 1) it is the constant schedule, as in the reference, whose lambda = 0 branch
      ignores the schedule.
    * ``lambda0="upstream"`` (only matters at lambda = 0): the reference's
      (D + 2 C1 eta T)^2 / (4 eps_R T), for any schedule. Its variance is half the unified
      one, so its Renyi bound is 2 eps_R, not eps_R (D2: the reference under-noises by
      sqrt 2; eps_R = 1 certifies epsilon 10.72 at delta 1e-5, where it prints 1.0036).
    """
    T = _check_steps(T)
    _check_positive("epsilon_renyi", epsilon_renyi)
    if schedule not in ("constant", "decreasing"):
        raise ValueError(f"schedule must be 'constant' or 'decreasing', got schedule={schedule!r}")
    if lambda0 not in ("unified", "upstream"):
        raise ValueError(f"lambda0 must be 'unified' or 'upstream', got lambda0={lambda0!r}")
    B_T = shift_bound(diameter, grad_clip, eta, weight_decay, T)
    if weight_decay == 0 and lambda0 == "upstream":
        variance = (diameter + 2 * grad_clip * eta * T) ** 2 / (4 * epsilon_renyi * T)
        return np.full(T, math.sqrt(variance))
    if schedule == "constant" or weight_decay == 0:
        variance = B_T**2 / (2 * epsilon_renyi * _sum_rho_squared_powers(eta, weight_decay, T))
        return np.full(T, math.sqrt(variance))
    t = np.arange(T)
    log_rho = math.log1p(-eta * weight_decay)
    variances = B_T**2 / (2 * epsilon_renyi * T * np.exp(2 * (T - t - 1) * log_rho))
    return np.sqrt(variances)


def _check_sigmas(sigmas) -> np.ndarray:
    sigmas = np.asarray(sigmas, dtype=float)
    if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
        raise ValueError(
            f"sigmas must be a non-empty 1-d sequence of finite numbers > 0, got sigmas={sigmas!r}"
        )
    return sigmas


def pabi_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay, *, rounding_shift=0.0) -> float:
    """Renyi epsilon certified for the model after the noisy phase run with ``sigmas``
    (T = len(sigmas)), for every order alpha: D_alpha <= alpha * eps_R (docs/differences.md#renyi-conversion).

    The minimum over prefixes n <= T of the constrained PABI program
    (``pabi_prefix_renyi_epsilons``): the steps after n apply the same kernels to both
    runs, which cannot increase a divergence. For a constant schedule the constraints do
    not bind and this is the closed form (1/2) B_T^2 / sum_t rho^(2(T-1-t)) sigma_t^2, so
    sigmas from ``pabi_sigmas`` (unified lambda0) give eps_R back, and the reference's
    lambda = 0 sigmas give 2 eps_R.
    """
    return float(running_renyi_epsilons(sigmas, eta, diameter, grad_clip, weight_decay,
                                        rounding_shift=rounding_shift)[-1])


def scale_sigmas_to_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay, epsilon_renyi, *,
                                  rounding_shift=0.0) -> np.ndarray:
    """The schedule ``sigmas`` multiplied by the one factor c that makes its certified
    ``pabi_renyi_epsilon`` equal ``epsilon_renyi``.

    Multiplying every sigma by c scales every variance in the program by c^2 and leaves the
    feasible shifts unchanged, so each prefix's optimum, and their minimum, scale by 1/c^2:
    c = sqrt(current / target). Rounding is left to the caller's margin.
    """
    _check_positive("epsilon_renyi", epsilon_renyi)
    sigmas = _check_sigmas(sigmas)
    current = pabi_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay, rounding_shift=rounding_shift)
    return sigmas * math.sqrt(current / epsilon_renyi)


def pabi_certificate(
    sigmas, diameter, grad_clip, eta, weight_decay, delta, *, conversion: str = "correct", rounding_shift=0.0
) -> PabiCertificate:
    """(epsilon, delta) certificate of a PABI noisy phase run with ``sigmas``.

    eps_R comes from ``pabi_renyi_epsilon`` (the sigmas actually used). ``"correct"``
    converts RDP(alpha) = alpha * eps_R with the Balle et al. 2020 / CKS Prop. 12 formula
    minimised over continuous alpha (docs/differences.md#renyi-conversion) and rounded up by the safety margin
    (src/privacy/rounding.py); ``"upstream"`` applies the
    reference's alpha-independent conversion, which does not certify anything (D3) and
    is kept only to compare with the published numbers.
    """
    epsilon_renyi = pabi_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay, rounding_shift=rounding_shift)
    if conversion == "correct":
        epsilon, alpha = _linear_rdp_to_dp_with_order(epsilon_renyi, delta)
        return PabiCertificate(round_up(epsilon), float(delta), epsilon_renyi, alpha, conversion)
    if conversion == "upstream":
        epsilon = upstream_rdp_to_dp(epsilon_renyi, delta)
        return PabiCertificate(epsilon, float(delta), epsilon_renyi, None, conversion)
    raise ValueError(f"conversion must be 'correct' or 'upstream', got conversion={conversion!r}")


def published_pabi_epsilon(epsilon_renyi_target, delta) -> float:
    """The epsilon the reference prints for a PABI run: its alpha-independent conversion
    (D3) of the *target* eps_R from the config, not of the eps_R of the sigmas used
    (which differ at lambda = 0, D2). 1.0036 for eps_R = 1, delta = 1e-5.
    """
    return upstream_rdp_to_dp(epsilon_renyi_target, delta)


def init_ball_radius(init_model_clip, clip_type: str, num_parameters: int) -> float:
    """L2 radius of the set the initial projection maps every model into (D9).

    ``"clip"``: the L2 ball of radius C0, so the radius is C0. ``"clamp"``: the box
    [-C0, C0]^d, whose points have L2 norm at most C0 sqrt(d). This radius depends on
    nothing but the config, unlike the reference's realised norm of the clamped model
    (data dependent, hence not a valid sensitivity). The diameter used for PABI and for
    output perturbation is 2 * radius.
    """
    _check_non_negative("init_model_clip", init_model_clip)
    if clip_type == "clip":
        return float(init_model_clip)
    if clip_type == "clamp":
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) or num_parameters < 1:
            raise ValueError(f"num_parameters must be an integer >= 1, got num_parameters={num_parameters!r}")
        return float(init_model_clip) * math.sqrt(num_parameters)
    raise ValueError(f"clip_type must be 'clip' or 'clamp', got clip_type={clip_type!r}")


def running_renyi_epsilons(sigmas, etas, diameter, grad_clip, weight_decay, *, rounding_shift=0.0) -> np.ndarray:
    """Renyi epsilon certified for the model after each noisy step n = 1..T: the running
    minimum of ``pabi_prefix_renyi_epsilons`` (a state is also a post-processing of every
    earlier one). Step sizes eta_t may vary. Its last value is ``pabi_renyi_epsilon``.
    """
    return np.minimum.accumulate(pabi_prefix_renyi_epsilons(sigmas, etas, diameter, grad_clip, weight_decay,
                                                            rounding_shift=rounding_shift))


# How far the weights rho^(T-t) may fall before their squares lose all precision.
_MAX_LOG_CONTRACTION = 300.0


def pabi_prefix_renyi_epsilons(sigmas, etas, diameter, grad_clip, weight_decay, *,
                               rounding_shift=0.0) -> np.ndarray:
    """eps_R(n), n = 1..T: the PABI Renyi bound of the first n noisy steps, with every
    intermediate shift kept non-negative (the constrained program).

    Proof sketch (Feldman, Mironov, Talwar, Thakurta 2018, shifted Renyi divergence
    D^(z)_alpha, with the contraction of the weight-decayed step). Both runs apply the
    same kernel theta -> psi_t(theta) + sigma_t xi_t, psi_t(theta) = rho_t theta -
    eta_t clip(g_t(theta)), with ||psi_t(x) - psi_t(y)|| <= rho_t ||x - y|| + s_t,
    s_t = 2 eta_t C1, from starts at most D apart (D^(D)_alpha = 0 at step 0).
    (i) Coupling X, X' within z: D^(rho_t z + s_t)_alpha(psi_t X || psi_t Y) <= D^(z)_alpha(X || Y).
    (ii) Shift reduction: D^(z)_alpha(X + N(0, sigma^2) || Y + N(0, sigma^2)) <=
    D^(z + a)_alpha(X || Y) + alpha a^2 / (2 sigma^2) for a >= 0.
    So any a_1..a_n with shifts z_t = rho_t z_{t-1} + s_t - a_t >= 0 for t < n and z_n = 0
    (then D^(0) = D_alpha) gives D_alpha(theta_n || theta'_n) <= alpha sum_t a_t^2 / (2 sigma_t^2);
    eps_R(n) is the minimum of that sum. A negative z_t is not a shift the lemmas allow:
    the closed form (1/2) B^2 / sum w_t^2 sigma_t^2 is this minimum only when its
    allocation a_t ~ w_t sigma_t^2 keeps every z_t >= 0 (true for a constant schedule,
    false for the reference's decreasing one).

    Solving it: in end-of-phase units (multiply step t's quantities by W_t =
    prod_{j>t} rho_j) the constraints read C_t <= M_t, C_n = M_n for the cumulative
    allocation C_t = sum_{i<=t} W_i a_i, with M_t = W_0 D + sum_{i<=t} W_i s_i, and the cost
    is sum (C_t - C_{t-1})^2 / (2 v_t), v_t = W_t^2 sigma_t^2. With V_t = sum_{i<=t} v_i the
    cheapest path from (0, 0) to (V_n, M_n) staying under the points (V_t, M_t) is their
    lower convex hull (the KKT slopes C'/V' only increase, and touch the barrier where they
    change), so the cost is sum over hull edges of (dM)^2 / (2 dV), kept for every prefix by
    one monotone-chain pass (O(T)).

    ``rounding_shift``: an extra distance the two runs may drift apart by per step beyond
    the analysed s_t (the float32 rounding of both runs, src/privacy/float_rounding.py);
    s_t becomes 2 eta_t C1 + rounding_shift.
    """
    sigmas = _check_sigmas(sigmas)
    etas = np.broadcast_to(np.asarray(etas, dtype=float), sigmas.shape)
    if not np.all(np.isfinite(etas)) or np.any(etas <= 0):
        raise ValueError(f"etas must be finite numbers > 0, got etas={etas!r}")
    _check_non_negative("diameter", diameter)
    _check_positive("grad_clip", grad_clip)
    _check_non_negative("weight_decay", weight_decay)
    _check_non_negative("rounding_shift", rounding_shift)
    _check_contraction(float(np.max(etas)), weight_decay)
    log_rho = np.log1p(-etas * weight_decay)
    # log W_t = sum_{j > t} log rho_j, for t = 0 (the start) .. T (the last step)
    log_w = np.concatenate((np.cumsum(log_rho[::-1])[::-1], [0.0]))
    if -log_w[0] > _MAX_LOG_CONTRACTION:
        raise ValueError(
            f"weight decay contracts the noisy phase by e^{log_w[0]:.4g} (eta * weight_decay over "
            f"{sigmas.size} steps), beyond what float64 resolves; got weight_decay={weight_decay!r}"
        )
    w = np.exp(log_w)
    barrier = w[0] * float(diameter) + np.cumsum(w[1:] * (2.0 * etas * float(grad_clip) + float(rounding_shift)))
    budget = np.cumsum((w[1:] * sigmas) ** 2)
    if not (np.all(np.isfinite(barrier)) and np.all(np.isfinite(budget))):
        raise ValueError(f"the shift or noise budget overflows float64 (diameter={diameter!r}, "
                         f"grad_clip={grad_clip!r}, sigmas up to {np.max(sigmas)!r})")
    hull_v, hull_m = [0.0], [0.0]
    cost = 0.0
    out = np.empty(sigmas.size)
    for n, (v, m) in enumerate(zip(budget.tolist(), barrier.tolist())):
        # drop hull points on or above the chord to the new point
        while len(hull_v) >= 2:
            v0, m0, v1, m1 = hull_v[-2], hull_m[-2], hull_v[-1], hull_m[-1]
            if (v1 - v0) * (m - m0) - (m1 - m0) * (v - v0) > 0:
                break
            cost -= (m1 - m0) ** 2 / (2.0 * (v1 - v0))
            hull_v.pop()
            hull_m.pop()
        cost += (m - hull_m[-1]) ** 2 / (2.0 * (v - hull_v[-1]))
        hull_v.append(v)
        hull_m.append(m)
        out[n] = cost
    return out

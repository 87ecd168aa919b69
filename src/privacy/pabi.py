"""Gradient Clipping certificate: privacy amplification by iteration (PABI).

Pure functions of numbers (numpy only). Notation of upstream.md section 3.3:

* C0 = init_model_clip, the radius of the initial projection; D = 2 * radius (diameter)
* C1 = grad_clip, eta = learning rate, lambda = weight_decay, rho = 1 - eta * lambda
* T noisy steps theta_{t+1} = rho * theta_t - eta * clip(g_t) + sigma_t * xi_t
* B_T = D rho^T + (2 C1 / lambda)(1 - rho^T), the shift still to absorb after T steps

Two data sets that differ only in the forget set give two runs whose iterates start at
most D apart and drift apart by at most 2 eta C1 per step. The Gaussian shifted-Renyi
bound of PABI (Feldman, Mironov, Talwar, Thakurta 2018, contractive noisy iteration,
with the contraction rho of the weight-decayed step) gives, for every order alpha,

    D_alpha(theta_T || theta'_T) <= alpha * eps_R,
    eps_R = (1/2) B_T^2 / sum_{t<T} rho^(2(T-1-t)) sigma_t^2,

which is what ``pabi_renyi_epsilon`` computes from the sigmas actually used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rdp import _linear_rdp_to_dp_with_order, upstream_rdp_to_dp

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
]


@dataclass(frozen=True)
class PabiSteps:
    """Number of noisy steps T and how it was chosen (upstream.md 3.2 step 5)."""

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
    """Number of PABI noisy steps T (reference ``unlearn_setup``, upstream.md 3.2).

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
    """B_T = D rho^T + (2 C1 / lambda)(1 - rho^T), rho = 1 - eta*lambda (upstream.md 3.3).

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
    """Noise sigma_t, t = 0..T-1, that makes the PABI Renyi bound equal eps_R.

    Feldman et al. 2018 PABI, Gaussian shifted-Renyi bound: eps_R = (1/2) B_T^2 /
    sum_t rho^(2(T-1-t)) sigma_t^2 (see ``pabi_renyi_epsilon``), solved for sigma
    (upstream.md 3.3):

    * ``schedule="constant"``: sigma^2 = B_T^2 / (2 eps_R sum_{k<T} rho^(2k)); at lambda = 0
      this is B_T^2 / (2 eps_R T) (decisions.md, D2: one formula for all lambda).
    * ``schedule="decreasing"``: sigma_t^2 = B_T^2 / (2 eps_R T rho^(2(T-t-1))), each step
      carrying an equal share of the bound. At lambda = 0 (rho = 1) it is the constant
      schedule, as in the reference, whose lambda = 0 branch ignores the schedule.
    * ``lambda0="upstream"`` (only matters at lambda = 0): the reference's
      (D + 2 C1 eta T)^2 / (4 eps_R T), whose bound is eps_R / 2 (D2), for any schedule.
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


def pabi_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay) -> float:
    """Renyi epsilon of the noisy phase for the sigmas actually used (T = len(sigmas)).

    eps_R = (1/2) B_T^2 / sum_{t<T} rho^(2(T-1-t)) sigma_t^2, the Gaussian shifted-Renyi
    bound of PABI (Feldman et al. 2018) with the shift budget B_T spread optimally over
    the steps; D_alpha <= alpha * eps_R for every alpha (decisions.md, D3). With sigmas
    from ``pabi_sigmas`` (unified lambda0) it returns eps_R back; with the reference's
    lambda = 0 sigmas it returns 2 eps_R.
    """
    sigmas = _check_sigmas(sigmas)
    T = sigmas.size
    B_T = shift_bound(diameter, grad_clip, eta, weight_decay, T)
    log_rho = math.log1p(-eta * weight_decay)
    weights_sq = np.exp(2 * (T - 1 - np.arange(T)) * log_rho)
    return float(0.5 * B_T**2 / np.sum(weights_sq * sigmas**2))


def pabi_certificate(
    sigmas, diameter, grad_clip, eta, weight_decay, delta, *, conversion: str = "correct"
) -> PabiCertificate:
    """(epsilon, delta) certificate of a PABI noisy phase run with ``sigmas``.

    eps_R comes from ``pabi_renyi_epsilon`` (the sigmas actually used). ``"correct"``
    converts RDP(alpha) = alpha * eps_R with the Balle et al. 2020 / CKS Prop. 12 formula
    minimised over continuous alpha (decisions.md, D3); ``"upstream"`` applies the
    reference's alpha-independent conversion, which does not certify anything (D3) and
    is kept only to compare with the published numbers.
    """
    epsilon_renyi = pabi_renyi_epsilon(sigmas, diameter, grad_clip, eta, weight_decay)
    if conversion == "correct":
        epsilon, alpha = _linear_rdp_to_dp_with_order(epsilon_renyi, delta)
        return PabiCertificate(epsilon, float(delta), epsilon_renyi, alpha, conversion)
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


def running_renyi_epsilons(sigmas, etas, diameter, grad_clip, weight_decay) -> np.ndarray:
    """PABI Renyi epsilon after each noisy step n = 1..T, for step sizes eta_t that may vary.

    eps_n = (1/2) (prod_{j<n} rho_j D + sum_{k<n} s_k w_k)^2 / sum_{k<n} sigma_k^2 w_k^2 with
    rho_j = 1 - eta_j lambda, s_k = 2 eta_k C1, w_k = prod_{k<j<n} rho_j: the Gaussian
    shifted-Renyi bound of PABI (Feldman et al. 2018) for the first n steps, current and
    final values included (the clean version of the reference's lagged diagnostic, D24).
    Its last value equals ``pabi_renyi_epsilon`` when eta is constant.
    """
    sigmas = _check_sigmas(sigmas)
    etas = np.broadcast_to(np.asarray(etas, dtype=float), sigmas.shape)
    if not np.all(np.isfinite(etas)) or np.any(etas <= 0):
        raise ValueError(f"etas must be finite numbers > 0, got etas={etas!r}")
    _check_non_negative("diameter", diameter)
    _check_positive("grad_clip", grad_clip)
    _check_non_negative("weight_decay", weight_decay)
    _check_contraction(float(np.max(etas)), weight_decay)
    out = np.empty(sigmas.size)
    # Recursions: shift A_n = rho_{n-1} A_{n-1} + s_{n-1} (A_0 = D) and noise budget
    # V_n = rho_{n-1}^2 V_{n-1} + sigma_{n-1}^2 (V_0 = 0), so eps_n = A_n^2 / (2 V_n).
    shift, noise = float(diameter), 0.0
    for n, (sigma, eta) in enumerate(zip(sigmas, etas)):
        rho = 1.0 - eta * weight_decay
        shift = rho * shift + 2.0 * eta * grad_clip
        noise = rho * rho * noise + sigma * sigma
        out[n] = 0.5 * shift * shift / noise
    return out

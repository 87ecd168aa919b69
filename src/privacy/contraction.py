"""Model Clipping certificate: the contraction-coefficient accountant (the original code).

Pure functions of numbers (numpy / scipy only).

Each noisy step projects the model onto the L2 ball of radius R and adds N(0, sigma^2 I)
(or, with gradient clipping, adds the noise before the projection). Two runs that
differ in the forget set are at most 2R (or 2(R + eta C1)) apart before the noise (at
the first step with noise before the projection, 2(C0 + eta C1): the runs start in the
initial set, not yet in the R-ball), so one step is a Gaussian channel with r = that distance / sigma. Its contraction
coefficient for the E_gamma divergence is gamma = theta_{eps~}(r) with
eps~ = log(1 + (e^eps - 1)/delta) (Balle, Barthe, Gaboardi, Geumlek 2019, Thm 1:
(gamma, eps~)-Dobrushin coefficient; Asoodeh et al. 2020), so delta_{t+1} =
gamma_t delta_t, starting from the delta of the initial projection + noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .gaussian import theta_eps, theta_eps_upper

__all__ = [
    "ContractionTrajectory",
    "eps_tilde",
    "initial_delta",
    "step_radius",
    "contraction_gamma",
    "delta_trajectory",
    "stop_step",
]

DEFAULT_MAX_STEPS = 200_000


def _check_number(name: str, value, *, positive: bool, allow_inf: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and not math.isnan(value) and (allow_inf or math.isfinite(value))
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        expected = ("> 0" if positive else ">= 0") + ("" if allow_inf else ", finite")
        raise ValueError(f"{name} must be a number {expected}, got {name}={value!r}")


def _check_delta_in_unit_interval(name: str, value) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {name}={value!r}")


# The smallest delta the accountant states. A true delta below it (1e-549 for a tiny
# model_clip) underflows float64 to 0.0, which would read as pure DP; any upper bound on
# delta_t is a valid input to the next step of the recursion (a mechanism that is
# (eps, delta)-DP is (eps, delta')-DP for delta' > delta), so the floor stays sound.
DELTA_FLOOR = 1e-300


def eps_tilde(epsilon, delta) -> float:
    """eps~ = log(1 + (e^eps - 1)/delta), the order of the E_gamma divergence whose
    contraction bounds the next delta (Balle et al. 2019, Thm 1, (gamma, eps~)-Dobrushin).

    Evaluated as logaddexp(0, log(expm1(eps)) - log(delta)), which neither overflows for
    tiny delta nor loses digits for small eps. delta = 0 gives inf (and then gamma = 0).
    """
    _check_number("epsilon", epsilon, positive=False)
    _check_delta_in_unit_interval("delta", delta)
    if delta == 0:
        return math.inf
    if epsilon == 0:
        return 0.0
    # log(e^eps - 1) = eps + log(1 - e^-eps): expm1 itself overflows above eps ~ 709
    log_expm1 = math.log(math.expm1(epsilon)) if epsilon < 30 else epsilon + math.log1p(-math.exp(-epsilon))
    return float(np.logaddexp(0.0, log_expm1 - math.log(delta)))


def initial_delta(epsilon, init_model_clip, init_sigma, *, upstream: bool = False) -> float:
    """delta after the initial projection onto the ball of radius C0 plus N(0, sigma0^2 I).

    Any two projected models are at most 2 C0 apart, so the Gaussian mechanism gives
    delta0 = theta_eps(2 C0 / sigma0) (Balle & Wang 2018, analytic Gaussian). Without
    initial noise (sigma0 = 0) nothing is private yet: delta0 = 1.
    """
    _check_number("epsilon", epsilon, positive=False)
    _check_number("init_model_clip", init_model_clip, positive=False)
    _check_number("init_sigma", init_sigma, positive=False)
    if init_sigma == 0:
        return 1.0
    if upstream:
        return theta_eps(epsilon, 2.0 * init_model_clip / init_sigma, upstream=True)
    return max(theta_eps_upper(epsilon, 2.0 * init_model_clip / init_sigma), DELTA_FLOOR)


def step_radius(
    model_clip,
    sigma,
    *,
    eta=None,
    grad_clip=None,
    noise_before_projection: bool,
    start_radius=None,
) -> float:
    """r = (largest distance between the two coupled runs before the noise) / sigma.

    * noise after the projection, no gradient clipping: both models lie in the ball of
      radius R, r = 2R / sigma.
    * gradient clipping with noise before the projection: the models start the step in a
      ball of radius R' and one clipped step moves them by at most eta C1, so
      r = 2(R' + eta C1)/sigma. R' = R (``model_clip``) once a step has projected them;
      the first step starts from the initial set instead, so the caller passes its radius
      as ``start_radius`` (C0, or inf when initial noise leaves the start unbounded, which
      gives r = inf and gamma = 1: that step contracts nothing).

    These are the two settings the reference's analysis covers (its asserts); any other
    combination is refused (D23).
    """
    _check_number("model_clip", model_clip, positive=False)
    _check_number("sigma", sigma, positive=True)
    if not noise_before_projection and not grad_clip:
        return 2 * model_clip / sigma
    if noise_before_projection and grad_clip:
        _check_number("grad_clip", grad_clip, positive=True)
        if eta is None:
            raise ValueError("eta must be given with grad_clip and noise before projection, got eta=None")
        _check_number("eta", eta, positive=False)
        start = model_clip if start_radius is None else start_radius
        _check_number("start_radius", start, positive=False, allow_inf=True)
        return 2 * (start + eta * grad_clip) / sigma
    raise ValueError(
        "model clipping is analysed only for (noise after projection, no grad_clip) or "
        f"(noise before projection, grad_clip > 0); got noise_before_projection="
        f"{noise_before_projection!r}, grad_clip={grad_clip!r}"
    )


def contraction_gamma(epsilon, delta_t, radius, *, upstream: bool = False) -> float:
    """gamma_t = theta_{eps~(eps, delta_t)}(r): the E_{e^eps~} contraction coefficient of
    one Gaussian step with r = distance / sigma (Balle et al. 2019, Thm 1,
    (gamma, eps~)-Dobrushin; Asoodeh et al. 2020). Then delta_{t+1} = gamma_t delta_t.
    Evaluated as an upper bound (``theta_eps_upper``: theta plus its rounding error, which
    also covers the product's rounding), so the recursion's deltas are upper bounds;
    ``upstream=True`` replays the reference's plain evaluation.
    """
    _check_number("radius", radius, positive=False, allow_inf=True)
    if upstream:
        return theta_eps(eps_tilde(epsilon, delta_t), radius, upstream=True)
    return theta_eps_upper(eps_tilde(epsilon, delta_t), radius)


@dataclass
class ContractionTrajectory:
    """The delta recursion, step by step.

    ``deltas[n-1]`` and ``gammas[n-1]`` are delta and gamma after step n (1-based).
    ``stop_step`` is the first step with delta <= target_delta, or None. The recursion
    ends at the stop step; it also ends early (``fixed_point`` True) when gamma is
    exactly 1.0 for a constant radius, since then every later step repeats it.
    ``steps_evaluated`` counts the steps the recursion covers, skipped repeats included.
    """

    deltas: list[float] = field(default_factory=list)
    gammas: list[float] = field(default_factory=list)
    stop_step: int | None = None
    steps_evaluated: int = 0
    fixed_point: bool = False

    def delta_after(self, n: int) -> float:
        """delta after step n (1-based, n = 0 is not stored: use delta0)."""
        if n < 1:
            raise ValueError(f"n must be an integer >= 1, got n={n!r}")
        if n <= len(self.deltas):
            return self.deltas[n - 1]
        if self.fixed_point and n <= self.steps_evaluated:
            return self.deltas[-1]
        raise ValueError(
            f"n={n} is beyond the recursion, which covers steps 1..{len(self.deltas)}"
            + (" (stopped at the target)" if self.stop_step is not None else "")
        )


def delta_trajectory(
    epsilon,
    delta0,
    radii,
    target_delta,
    *,
    max_steps: int | None = None,
    upstream: bool = False,
) -> ContractionTrajectory:
    """Run delta_{t+1} = theta_{eps~(eps, delta_t)}(r_t) * delta_t until delta <= target.

    The model-clipping accountant (the original code; Balle et al. 2019 Thm 1 contraction
    of the E_gamma divergence under a Gaussian channel). ``radii`` is either an iterable
    of per-step r_t (the radius depends on eta_t with gradient clipping) or one float r
    used for every step, with ``max_steps`` (default 200,000) bounding the recursion.
    ``upstream=True`` evaluates theta with the reference's 1 - erf, to replay its numbers.
    """
    _check_number("epsilon", epsilon, positive=False)
    _check_delta_in_unit_interval("delta0", delta0)
    _check_delta_in_unit_interval("target_delta", target_delta)
    constant = isinstance(radii, (int, float, np.floating, np.integer)) or (
        isinstance(radii, np.ndarray) and radii.ndim == 0
    )
    if constant:
        _check_number("radius", radii, positive=False, allow_inf=True)
        steps = DEFAULT_MAX_STEPS if max_steps is None else max_steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"max_steps must be an integer >= 0, got max_steps={max_steps!r}")
        radius = float(radii)
        radius_iter: Iterable[float] = (radius for _ in range(steps))
    else:
        if max_steps is not None:
            raise ValueError("max_steps is only used with a constant radius; got a sequence of radii")
        steps = None
        radius_iter = radii

    trajectory = ContractionTrajectory()
    delta = float(delta0)
    previous = None  # (delta, radius, gamma) of the last evaluation: gamma depends on nothing else
    for n, r in enumerate(radius_iter, start=1):
        r = float(r)
        if previous is not None and previous[0] == delta and previous[1] == r:
            gamma = previous[2]
        else:
            gamma = contraction_gamma(epsilon, delta, r, upstream=upstream)
            previous = (delta, r, gamma)
        new_delta = gamma * delta
        if not upstream:  # never below what float64 holds: an underflow to 0 would claim pure DP
            new_delta = max(new_delta, DELTA_FLOOR)
        trajectory.deltas.append(new_delta)
        trajectory.gammas.append(gamma)
        trajectory.steps_evaluated = n
        if new_delta <= target_delta:
            trajectory.stop_step = n
            return trajectory
        if constant and new_delta == delta:
            # delta and r are unchanged, so every later step repeats this one exactly.
            trajectory.fixed_point = True
            trajectory.steps_evaluated = steps
            return trajectory
        delta = new_delta
    return trajectory


def stop_step(
    epsilon,
    delta0,
    radius,
    target_delta,
    max_steps: int = DEFAULT_MAX_STEPS,
    *,
    upstream: bool = False,
) -> int | None:
    """Number of noisy model-clipping steps until delta <= target_delta, or None if it is
    not reached within ``max_steps`` (constant radius; Balle et al. 2019 Thm 1 recursion).
    Needs no data: used to predict the length of the noisy phase.
    """
    return delta_trajectory(
        epsilon, delta0, radius, target_delta, max_steps=max_steps, upstream=upstream
    ).stop_step

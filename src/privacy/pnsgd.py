"""The W-infinity-tracking accountant of projected noisy SGD unlearning (Chien, Wang, Chen,
Li, "Certified Machine Unlearning via Noisy Stochastic Gradient Descent", NeurIPS 2024).

Pure functions of numbers (numpy / scipy only). The chain is projected noisy SGD with
cyclic mini-batches on an m-strongly convex, L-smooth objective whose per-example
gradients are bounded by M: the n examples are cut once into J batches (the smallest of
size b), visited in the same order every epoch, and each step is

    w <- Pi_R( w - eta (mean over the batch of grad l_i(w) + m w) + sqrt(2 eta sigma^2) xi ),

eta <= 1/L, Pi_R the projection onto the ball of radius R (applied only when ||w|| > R).
Each step is then a c-contraction, c = 1 - eta m, followed by Gaussian noise.

* Two chains on data that differ in S examples, coupled by the same initial draw and the
  same noise, are at most
      Z_B(S) = 2 eta M S / (b (1 - c^J))
  apart at every time (one differing batch per epoch moves them by 2 eta M r / b for the
  r differing examples it holds; an epoch contracts by c^J); both lie in the ball, so at
  most 2R apart too. No stationarity is needed: the reference is the chain run on the
  data without the examples from the same initial law for as many epochs in all.
* K epochs (N = K J steps) of the same noisy steps on the same data turn a W-infinity
  distance z into the Renyi bound of the shifted-divergence (privacy amplification by
  iteration) argument for a c-contraction:
      eps(alpha) = alpha z^2 / (2 eta sigma^2) * (1 - c^2) c^(2N) / (1 - c^(2N))
  (the paper's constant: twice the alpha z^2/(2 s^2) of noise variance s^2 = 2 eta sigma^2,
  so on the safe side). The paper's code certified the first request with the looser
      eps(alpha) = alpha z^2 / (2 eta sigma^2) * c^(2N)           (bound="loose").
* A sequence of requests tracks the distance to the chain without the examples deleted
  so far (the triangle inequality of W-infinity):
      z_1 = Z_B(S_1),   z_s = min(2R, z_{s-1} c^(K_{s-1} J) + Z_B(S_s)),
  and request s is certified by eps(alpha) at z_s after its K_s epochs.

With removal (not the paper's replacement) a batch of the data without the examples is
smaller: its mean over the examples left still differs by at most 2 M r / b_j, b_j its
size before the request, and b_j >= b minus the examples removed before (the smallest
batch can only have lost those); `neighbouring="replace"` keeps b as the paper's code.
The (epsilon, delta) conversion, the search over alpha and the step record are those of
the Langevin accountant (src/privacy/langevin.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from src.privacy.langevin import StepChoice, dp_epsilon

__all__ = ["MiniBatchChain", "EpochRequest", "BOUNDS", "wasserstein_shift", "renyi_bound", "certificate",
           "smallest_epochs", "calibrate_sigma", "sequential_epochs"]

BOUNDS = ("shifted", "loose")


@dataclass(frozen=True)
class MiniBatchChain:
    """The constants of one projected noisy SGD chain (training and unlearning share them)."""

    n: int  # examples the chain was trained on
    batch_size: int  # b: the smallest batch of the cyclic partition
    batches: int  # J: steps per epoch
    m: float  # strong convexity (the l2 coefficient)
    eta: float  # step size, <= 1/L
    M: float  # bound on every per-example gradient of the data term
    sigma: float  # temperature: the per-step noise std is sqrt(2 eta) sigma
    radius: float = math.inf  # R of the projection; inf: no cap on the distance

    def __post_init__(self):
        for name in ("m", "eta", "M", "sigma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")
        for name in ("n", "batch_size", "batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
        if self.batch_size > self.n or self.batches * self.batch_size > self.n:
            raise ValueError(f"{self.batches} batches of at least {self.batch_size} examples do not fit in "
                             f"n={self.n}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got radius={self.radius!r}")
        if not 0 < self.eta * self.m < 1:
            raise ValueError(f"eta * m = {self.eta * self.m:g} must be in (0, 1): the step must contract")

    @property
    def c(self) -> float:
        return 1.0 - self.eta * self.m


@dataclass(frozen=True)
class EpochRequest:
    """One request of a sequence: its size, K_s in epochs, the tracked W-infinity
    distance z_s it starts from, and the certificate after it."""

    size: int
    epochs: int
    shift: float
    epsilon: float
    alpha: float
    epsilon_renyi: float


def wasserstein_shift(S: int, chain: MiniBatchChain, batch_size: int | None = None) -> float:
    """Z_B(S) = 2 eta M S / (b (1 - c^J)), capped at 2R: how far the chain on D and the
    chain on D without S examples can be, coupled, at any time."""
    b = chain.batch_size if batch_size is None else batch_size
    if b < 1:
        raise ValueError(f"the smallest batch is empty (b={b}): too many examples removed for this partition")
    return min(2.0 * chain.radius, 2.0 * chain.eta * chain.M * S / (b * (1.0 - chain.c ** chain.batches)))


def renyi_bound(alpha, shift: float, epochs: int, chain: MiniBatchChain, bound: str = "shifted"):
    """eps(alpha) after `epochs` epochs of noisy steps on the same data from a W-infinity
    distance `shift`."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    alpha = np.asarray(alpha, dtype=float)
    steps = epochs * chain.batches
    scale = alpha * shift**2 / (2.0 * chain.eta * chain.sigma**2)
    decay = chain.c ** (2.0 * steps)
    if bound == "loose":
        return scale * decay
    if steps == 0:
        return np.full_like(alpha, math.inf)  # no noisy step after the shift: no bound
    return scale * (1.0 - chain.c**2) * decay / (1.0 - decay)


def _check_epochs(epochs) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got epochs={epochs!r}")


def _certificate_at(shift: float, epochs: int, chain, delta, alpha_range, conversion, bound) -> StepChoice:
    _check_epochs(epochs)

    def renyi(alpha):
        return renyi_bound(alpha, shift, epochs, chain, bound)

    epsilon, alpha = dp_epsilon(renyi, delta, alpha_range, conversion)
    return StepChoice(int(epochs), epsilon, alpha, float(renyi(np.array([alpha]))[0]))


def certificate(epochs: int, S: int, chain: MiniBatchChain, delta: float, alpha_range=(2.0, 1e5),
                conversion: str = "mironov", bound: str = "shifted") -> StepChoice:
    """(epsilon, delta) after `epochs` unlearning epochs for one request of S examples
    (StepChoice.steps holds the epochs)."""
    return _certificate_at(wasserstein_shift(S, chain), epochs, chain, delta, alpha_range, conversion, bound)


def _smallest_epochs_at(shift, epsilon, chain, delta, alpha_range, conversion, bound, min_epochs, max_epochs):
    if not (isinstance(epsilon, (int, float, np.floating)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got epsilon={epsilon!r}")

    def meets(k: int) -> StepChoice | None:
        choice = _certificate_at(shift, k, chain, delta, alpha_range, conversion, bound)
        return choice if choice.epsilon <= epsilon else None

    # The certificate falls as the epochs grow: doubling, then bisection on the integers.
    lo, hi = min_epochs, max(min_epochs, 1)
    found = meets(lo)
    if found:
        return found
    while not (found := meets(hi)):
        lo, hi = hi, 2 * hi
        if hi > max_epochs:
            raise ValueError(f"epsilon={epsilon!r} is not reached within {max_epochs} epochs at delta={delta!r}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        choice = meets(mid)
        if choice:
            hi, found = mid, choice
        else:
            lo = mid
    return found


def smallest_epochs(epsilon: float, S: int, chain: MiniBatchChain, delta: float, alpha_range=(2.0, 1e5),
                    conversion: str = "mironov", bound: str = "shifted", min_epochs: int = 1,
                    max_epochs: int = 10**7) -> StepChoice:
    """The smallest K >= min_epochs (in epochs) whose certificate is <= epsilon."""
    return _smallest_epochs_at(wasserstein_shift(S, chain), epsilon, chain, delta, alpha_range, conversion, bound,
                               min_epochs, max_epochs)


def calibrate_sigma(epochs: int, epsilon: float, S: int, chain: MiniBatchChain, delta: float,
                    alpha_range=(2.0, 1e5), conversion: str = "mironov", bound: str = "shifted",
                    bracket=(1e-6, 1e3), rtol: float = 1e-10) -> float:
    """The smallest temperature whose certificate after `epochs` epochs is <= epsilon:
    bisection in log(sigma) on that monotone predicate, returning the feasible end."""
    def feasible(sigma: float) -> bool:
        return certificate(epochs, S, replace(chain, sigma=sigma), delta, alpha_range, conversion,
                           bound).epsilon <= epsilon

    lo, hi = (float(b) for b in bracket)
    if not feasible(hi):
        raise ValueError(f"no sigma <= {hi:g} certifies epsilon={epsilon!r} after {epochs} epochs")
    if feasible(lo):
        return lo
    while math.log(hi / lo) > rtol:
        mid = math.sqrt(lo * hi)
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi


def sequential_epochs(sizes: Sequence[int], epsilon: float, chain: MiniBatchChain, delta: float,
                      alpha_range=(2.0, 1e5), conversion: str = "mironov", neighbouring: str = "remove",
                      first_bound: str = "shifted", min_epochs: int = 1,
                      max_epochs: int = 10**7) -> list[EpochRequest]:
    """K_s (epochs) for each request, greedily the smallest that certifies epsilon after
    request s with the earlier K fixed, tracking the W-infinity distance z_s.

    first_bound="loose" with neighbouring="replace" is the paper's code (its
    `paint_unlearning_sigma` and `sequential` schedules)."""
    if neighbouring not in ("remove", "replace"):
        raise ValueError(f"neighbouring must be 'remove' or 'replace', got {neighbouring!r}")
    if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"request sizes must be a non-empty list of integers >= 1, got {list(sizes)!r}")
    out: list[EpochRequest] = []
    removed, shift = 0, 0.0
    for s, size in enumerate(sizes):
        b = chain.batch_size - (removed if neighbouring == "remove" else 0)
        step = wasserstein_shift(int(size), chain, b)
        shift = step if s == 0 else min(2.0 * chain.radius, shift * chain.c ** (out[-1].epochs * chain.batches) + step)
        bound = first_bound if s == 0 else "shifted"
        choice = _smallest_epochs_at(shift, epsilon, chain, delta, alpha_range, conversion, bound, min_epochs,
                                     max_epochs)
        out.append(EpochRequest(int(size), choice.steps, shift, choice.epsilon, choice.alpha, choice.epsilon_renyi))
        removed += int(size)
    return out

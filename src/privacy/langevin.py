"""The accountant of Langevin unlearning (Chien, Wang, Chen, Li, NeurIPS 2024).

Pure functions of numbers (numpy / scipy only). The chain is full-batch noisy gradient
descent on an m-strongly convex, L-smooth objective whose per-example gradients are
bounded by M,

    w <- w - eta * grad f_D(w) + sqrt(2 eta sigma^2) xi,   eta <= 1/L,

started from N(mu, (2 sigma^2 / m) I). Every law along the chain then satisfies a
log-Sobolev inequality with constant C_LSI = 2 sigma^2 / m, and:

* learning is Renyi-DP for a group of S examples out of n, at every order alpha > 1:
      eps0(alpha) = 4 alpha S^2 M^2 / (m sigma^2 n^2)
  (2 S M / n bounds the gradient difference of the two objectives, for removal of S
  examples as for replacement);
* K further steps on the data without the S examples contract the divergence to the
  chain that never saw them:
      eps_K(alpha) = exp(-K eta m / alpha) * eps0(alpha);
* sequential requests s = 2, 3, ... chain the bounds with the weak triangle inequality
  of Renyi divergence, which doubles the order at every earlier request:
      eps_s(alpha) = exp(-k_s eta m / alpha) (alpha - 1/2)/(alpha - 1)
                     * [eps0(2 alpha; S_s) + eps_{s-1}(2 alpha)].

A Renyi bound converts to (epsilon, delta) as min over alpha of eps(alpha) + c(alpha):
Mironov's c = log(1/delta)/(alpha - 1) (the paper's code), or the tighter Balle et al.
2020 c = log((alpha-1)/alpha) - (log delta + log alpha)/(alpha - 1). For a fixed alpha
the smallest K meeting epsilon is the closed form

    K(alpha) = (alpha / (eta m)) * ln( P(alpha) / (epsilon - c(alpha)) ),

P(alpha) the bound at K = 0, and the answer is ceil(min over alpha of K(alpha)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Chain",
    "StepChoice",
    "Request",
    "CONVERSIONS",
    "epsilon0",
    "lsi_constant",
    "dp_epsilon",
    "certificate",
    "learning_epsilon",
    "smallest_steps",
    "calibrate_sigma",
    "sequential_steps",
    "sequential_renyi",
]

CONVERSIONS = ("mironov", "balle2020")

# Dense scan of log(alpha) before the local refinement: the objective is smooth and has
# one interior minimum, but Brent alone can stop in a flat region (spec'd K values are
# reproduced only with a scan first).
_SCAN_POINTS = 4000


@dataclass(frozen=True)
class Chain:
    """The constants of one Langevin chain (training and unlearning share them)."""

    n: int  # examples the chain was trained on (|D|)
    m: float  # strong convexity: the l2 coefficient of the objective
    eta: float  # step size, <= 1/L
    M: float  # bound on every per-example gradient of the data term
    sigma: float  # temperature; the per-step noise std is sqrt(2 eta) sigma

    def __post_init__(self):
        for name in ("m", "eta", "M", "sigma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValueError(f"n must be an integer >= 1, got n={self.n!r}")

    @property
    def eta_m(self) -> float:
        return self.eta * self.m


@dataclass(frozen=True)
class StepChoice:
    """K and the certificate it gives (the Renyi bound at the optimal order alpha)."""

    steps: int
    epsilon: float
    alpha: float
    epsilon_renyi: float


@dataclass(frozen=True)
class Request:
    """One request of a sequence: its size, K_s, and the certificate after it."""

    size: int
    steps: int
    epsilon: float
    alpha: float
    epsilon_renyi: float
    n_before: int  # |D| before this request removed its examples


def lsi_constant(sigma: float, m: float) -> float:
    """C_LSI = 2 sigma^2 / m: the LSI constant of the initial law, kept by every step."""
    return 2.0 * sigma**2 / m


def epsilon0(alpha, S: int, chain: Chain, n: int | None = None):
    """4 alpha S^2 M^2 / (m sigma^2 n^2): Renyi bound of learning, group of S out of n."""
    n = chain.n if n is None else n
    return 4.0 * np.asarray(alpha, dtype=float) * S**2 * chain.M**2 / (chain.m * chain.sigma**2 * float(n) ** 2)


def _conversion_term(alpha, delta: float, conversion: str):
    alpha = np.asarray(alpha, dtype=float)
    if conversion == "mironov":
        return math.log(1.0 / delta) / (alpha - 1.0)
    if conversion == "balle2020":
        return np.log1p(-1.0 / alpha) + (math.log(1.0 / delta) - np.log(alpha)) / (alpha - 1.0)
    raise ValueError(f"conversion must be one of {CONVERSIONS}, got {conversion!r}")


def _check(delta, alpha_range) -> tuple[float, float]:
    if not (isinstance(delta, (int, float, np.floating)) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got delta={delta!r}")
    lo, hi = (float(a) for a in alpha_range)
    if not (1.0 <= lo < hi and math.isfinite(hi)):
        raise ValueError(f"alpha_range must be (lo, hi) with 1 <= lo < hi < inf, got {alpha_range!r}")
    return lo, hi


def _minimise(objective: Callable, lo: float, hi: float) -> tuple[float, float]:
    """(min, argmin) of a smooth function of alpha on (lo, hi]: a scan log-spaced in
    alpha - 1, then bounded Brent in the best bracket. Non-finite values count as +inf."""
    lo = max(lo, 1.0 + 1e-9)  # alpha = 1 is no order
    u = np.linspace(math.log(lo - 1.0), math.log(hi - 1.0), _SCAN_POINTS)
    alphas = 1.0 + np.exp(u)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values = np.asarray(objective(alphas), dtype=float)
    values = np.where(np.isfinite(values), values, np.inf)
    best = int(np.argmin(values))
    if not np.isfinite(values[best]):
        return math.inf, float(alphas[best])
    a, b = u[max(best - 1, 0)], u[min(best + 1, len(u) - 1)]

    def at(x: float) -> float:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = float(objective(np.array([1.0 + math.exp(x)]))[0])
        return value if math.isfinite(value) else math.inf

    from scipy import optimize  # imported here: ~0.3 s at import time

    result = optimize.minimize_scalar(at, bounds=(a, b), method="bounded", options={"xatol": 1e-12, "maxiter": 500})
    if result.fun < values[best]:
        return float(result.fun), 1.0 + math.exp(float(result.x))
    return float(values[best]), float(alphas[best])


def dp_epsilon(renyi: Callable, delta: float, alpha_range=(1.0, 1e4), conversion: str = "mironov"):
    """min over alpha in alpha_range of renyi(alpha) + c(alpha): (epsilon, alpha).

    Every alpha gives a valid bound; the epsilon returned is the bound at the alpha
    returned, so it is a certificate even where the minimisation is not exact."""
    lo, hi = _check(delta, alpha_range)
    _conversion_term(2.0, delta, conversion)  # validates the name
    epsilon, alpha = _minimise(lambda a: renyi(a) + _conversion_term(a, delta, conversion), lo, hi)
    if math.isfinite(epsilon):  # re-evaluate at the returned order: the certificate is exactly this number
        epsilon = float(renyi(np.array([alpha]))[0] + _conversion_term(alpha, delta, conversion))
    return epsilon, alpha


def _single_prefactor(S: int, chain: Chain) -> Callable:
    return lambda alpha: epsilon0(alpha, S, chain)


def certificate(steps: int, S: int, chain: Chain, delta: float, alpha_range=(1.0, 1e4),
                conversion: str = "mironov") -> StepChoice:
    """(epsilon, delta) after `steps` unlearning steps for a request of S examples."""
    return _certificate_of(_single_prefactor(S, chain), steps, chain, delta, alpha_range, conversion)


def learning_epsilon(S: int, chain: Chain, delta: float, alpha_range=(1.0, 1e4), conversion: str = "mironov"):
    """The (epsilon, delta) of learning alone (K = 0): the paper's Figure 3c `epsilon0`."""
    return certificate(0, S, chain, delta, alpha_range, conversion)


def _certificate_of(prefactor: Callable, steps: int, chain: Chain, delta, alpha_range, conversion) -> StepChoice:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got steps={steps!r}")

    def renyi(alpha):
        return np.exp(-steps * chain.eta_m / alpha) * prefactor(alpha)

    epsilon, alpha = dp_epsilon(renyi, delta, alpha_range, conversion)
    return StepChoice(int(steps), epsilon, alpha, float(renyi(np.array([alpha]))[0]))


# The most steps a search may choose (and a config may ask for): far beyond any run that
# finishes (a full-batch step each), small enough that a plan's per-step list fits in memory.
MAX_STEPS = 10**7


def smallest_steps(epsilon: float, S: int, chain: Chain, delta: float, alpha_range=(1.0001, 1e4),
                   conversion: str = "mironov", min_steps: int = 1, step_lattice: int = 1) -> StepChoice:
    """The smallest K (>= min_steps, on the lattice min_steps + j * step_lattice) whose
    certificate is <= epsilon, by the closed form K(alpha) minimised over alpha.

    step_lattice = 10 with min_steps = 1 reproduces the paper's `main_lmc` search
    (K in 1, 11, 21, ...). Raises ValueError when no K reaches epsilon in alpha_range.
    """
    return _smallest_steps_of(_single_prefactor(S, chain), epsilon, chain, delta, alpha_range, conversion,
                              min_steps, step_lattice)


def _smallest_steps_of(prefactor: Callable, epsilon, chain: Chain, delta, alpha_range, conversion,
                       min_steps: int = 1, step_lattice: int = 1) -> StepChoice:
    if not (isinstance(epsilon, (int, float, np.floating)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got epsilon={epsilon!r}")
    if min_steps < 0 or step_lattice < 1:
        raise ValueError(f"need min_steps >= 0 and step_lattice >= 1, got {min_steps!r}, {step_lattice!r}")
    lo, hi = _check(delta, alpha_range)

    def steps_at(alpha):
        room = epsilon - _conversion_term(alpha, delta, conversion)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = alpha / chain.eta_m * np.log(prefactor(alpha) / room)
        return np.where(room > 0, k, np.inf)

    k_min, _ = _minimise(steps_at, lo, hi)
    if not math.isfinite(k_min):
        raise ValueError(f"epsilon={epsilon!r} cannot be reached at delta={delta!r} with orders alpha in "
                         f"({lo:g}, {hi:g}]: even K -> infinity leaves the conversion term above epsilon")
    if k_min > MAX_STEPS:  # a tiny eta m (weight_decay 1e-300) would otherwise walk K up from ~1e300
        raise ValueError(f"epsilon={epsilon!r} needs about K = {k_min:.3g} steps, more than {MAX_STEPS:.0e}: the "
                         f"chain contracts too slowly (eta m = {chain.eta_m:.3g}); a larger weight_decay or step "
                         "size needs fewer")
    k = max(min_steps, math.ceil(k_min - 1e-9 * max(1.0, abs(k_min))))
    k = min_steps + step_lattice * math.ceil((k - min_steps) / step_lattice)
    # The closed form is a real-valued minimum; confirm on the certificate itself, and
    # step up (never down) if rounding left it a hair above the target: by 1, 2, 4, ...
    # lattice points, then back by bisection to the first that certifies (the certificate
    # falls with K), so that the search is bounded.
    choice = _certificate_of(prefactor, k, chain, delta, alpha_range, conversion)
    if choice.epsilon <= epsilon:
        return choice
    low, jump = k, 1
    while True:
        high = low + jump * step_lattice
        if high > max(MAX_STEPS, k):
            raise ValueError(f"epsilon={epsilon!r} is not certified by any K up to {MAX_STEPS:.0e} steps")
        choice = _certificate_of(prefactor, high, chain, delta, alpha_range, conversion)
        if choice.epsilon <= epsilon:
            break
        low, jump = high, jump * 2
    while high - low > step_lattice:  # low fails, high certifies
        middle = low + step_lattice * ((high - low) // step_lattice // 2)
        trial = _certificate_of(prefactor, middle, chain, delta, alpha_range, conversion)
        if trial.epsilon <= epsilon:
            high, choice = middle, trial
        else:
            low = middle
    return choice


def calibrate_sigma(steps: int, epsilon: float, S: int, chain: Chain, delta: float, alpha_range=(2.0, 1e4),
                    conversion: str = "mironov", bracket=(1e-6, 1e3), rtol: float = 1e-10) -> float:
    """The smallest temperature sigma whose certificate after `steps` steps is <= epsilon.

    Bisection in log(sigma) on the monotone predicate "certificate(steps, sigma) <=
    epsilon" (the certificate falls as sigma grows); returns the feasible end of the
    final bracket, so the answer always certifies. `chain.sigma` is ignored.
    """
    def feasible(sigma: float) -> bool:
        return certificate(steps, S, replace(chain, sigma=sigma), delta, alpha_range, conversion).epsilon <= epsilon

    lo, hi = (float(b) for b in bracket)
    if not feasible(hi):
        raise ValueError(f"no sigma <= {hi:g} certifies epsilon={epsilon!r} after {steps} steps at delta={delta!r}")
    if feasible(lo):
        return lo
    while math.log(hi / lo) > rtol:
        mid = math.sqrt(lo * hi)
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---------------------------------------------------------------------------------------
# Sequential requests


def sequential_renyi(alpha, sizes: Sequence[int], steps: Sequence[int], chain: Chain,
                     neighbouring: str = "remove"):
    """eps_s(alpha) after requests 1..s with the given sizes and step counts.

    neighbouring "replace" keeps n fixed (the paper's code, which swaps examples);
    "remove" uses |D| before each request, n - (S_1 + ... + S_{s-1}), in that request's
    eps0: the gradient difference of removing S of n examples is 2 S M / n.
    """
    if neighbouring not in ("remove", "replace"):
        raise ValueError(f"neighbouring must be 'remove' or 'replace', got {neighbouring!r}")
    alpha = np.asarray(alpha, dtype=float)
    befores = _sizes_before(sizes, chain.n, neighbouring)

    def bound(a, s):  # requests 0..s (0-based)
        pair = epsilon0(2 * a if s else a, sizes[s], chain, befores[s])
        decay = np.exp(-steps[s] * chain.eta_m / a)
        if s == 0:
            return decay * pair
        return decay * (a - 0.5) / (a - 1.0) * (pair + bound(2 * a, s - 1))

    return bound(alpha, len(sizes) - 1)


def _sizes_before(sizes: Sequence[int], n: int, neighbouring: str) -> list[int]:
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"request sizes must be integers >= 1, got {list(sizes)!r}")
    if neighbouring == "replace":
        return [n] * len(sizes)
    befores, left = [], n
    for s in sizes:
        befores.append(left)
        left -= s
    if left < 1:
        raise ValueError(f"requests of {list(sizes)} remove {sum(sizes)} of n={n} examples; at least one must remain")
    return befores


def sequential_steps(sizes: Sequence[int], epsilon: float, chain: Chain, delta: float, alpha_range=(2.0, 1e5),
                     conversion: str = "mironov", neighbouring: str = "remove", min_steps: int = 1) -> list[Request]:
    """K_s for each request, chosen greedily: the smallest K_s that certifies epsilon after
    request s, the earlier K fixed. Each request's certificate is against the chain that
    never saw any of the examples removed so far."""
    befores = _sizes_before(sizes, chain.n, neighbouring)
    chosen: list[int] = []
    out: list[Request] = []
    for s, size in enumerate(sizes):
        prefactor = _sequential_prefactor(sizes[:s + 1], chosen, chain, neighbouring)
        choice = _smallest_steps_of(prefactor, epsilon, chain, delta, alpha_range, conversion, min_steps, 1)
        chosen.append(choice.steps)
        out.append(Request(int(size), choice.steps, choice.epsilon, choice.alpha, choice.epsilon_renyi, befores[s]))
    return out


def _sequential_prefactor(sizes, earlier_steps, chain, neighbouring) -> Callable:
    """The bound of request s at K_s = 0, as a function of alpha."""
    if len(sizes) == 1:
        n = _sizes_before(sizes, chain.n, neighbouring)[0]
        return lambda alpha: epsilon0(alpha, sizes[0], chain, n)

    def prefactor(alpha):
        return sequential_renyi(alpha, sizes, list(earlier_steps) + [0], chain, neighbouring)

    return prefactor

"""The accountant of Descent-to-Delete (Neel, Roth, Sharifi-Malvajerdi, ALT 2021), the
baseline of Langevin unlearning, with the formulas of Chien et al.'s code.

Pure functions of numbers. The objective is m-strongly convex and L-smooth with
per-example gradients bounded by M; gradient descent with step eta contracts distances
by gamma = max(|1 - eta m|, |1 - eta L|) per step ((L - m)/(L + m) at eta = 2/(L + m)).
Removing S of n examples moves the optimum by at most 2 S M / (m n).

* One request, secret state: from a model within r = (2 S M/(m n)) gamma^I / (1 - gamma^I)
  of the optimum, I steps on the new data land within r of the new optimum; the
  published model adds Gaussian noise of
      sigma = 4 sqrt(2) S M gamma^I / (m n (1 - gamma^I) (sqrt(log(1/delta) + eps) - sqrt(log(1/delta)))).
  (S = 1 is the paper's formula; a group of S scales the sensitivity by S.)
* A sequence of single deletions without a secret state (the noise stays in the state):
      I_min = ceil( ln( sqrt(2 d)/(1 - gamma) / (sqrt(2 ln(2/delta) + eps) - sqrt(2 ln(2/delta))) ) / ln(1/gamma) )
      I_i   = floor(f I_min) + ceil( ln(ln(4 d i / delta)) / ln(1/gamma) )
      sigma_i = 8 M gamma^I_i / (m n (1 - gamma^I_i) (sqrt(2 ln(2/delta) + 3 eps) - sqrt(2 ln(2/delta) + 2 eps)))
  with d the dimension of the model and f >= 1 a safety factor.
"""

from __future__ import annotations

import math

__all__ = ["contraction", "convergence_radius", "secret_state_sigma", "sequential_min_steps",
           "sequential_steps", "sequential_sigma"]


def _positive(**values) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")


def contraction(eta: float, L: float, m: float) -> float:
    """gamma = max(|1 - eta m|, |1 - eta L|): the Lipschitz constant of one GD step on an
    m-strongly convex, L-smooth function; < 1 exactly when 0 < eta < 2/L."""
    _positive(eta=eta, L=L, m=m)
    if m > L:
        raise ValueError(f"strong convexity m={m!r} cannot exceed smoothness L={L!r}")
    gamma = max(abs(1.0 - eta * m), abs(1.0 - eta * L))
    if gamma >= 1:
        raise ValueError(f"eta={eta!r} does not contract (gamma={gamma:g}); need eta < 2/L = {2 / L:g}")
    return gamma


def convergence_radius(steps: int, S: int, M: float, m: float, n: int, gamma: float) -> float:
    """r = (2 S M/(m n)) gamma^I/(1 - gamma^I): how close to the optimum the trained model
    must be for the secret-state certificate after I = steps steps."""
    _positive(M=M, m=m)
    g = gamma**steps
    return 2.0 * S * M / (m * n) * g / (1.0 - g)


def secret_state_sigma(steps: int, epsilon: float, delta: float, S: int, M: float, m: float, n: int,
                       gamma: float) -> float:
    """Noise of the published model after I = steps GD steps (one request, secret state)."""
    _positive(epsilon=epsilon, M=M, m=m)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    log_inv_delta = math.log(1.0 / delta)
    g = gamma**steps
    gap = math.sqrt(log_inv_delta + epsilon) - math.sqrt(log_inv_delta)
    return 4.0 * math.sqrt(2.0) * S * M * g / (m * n * (1.0 - g) * gap)


def sequential_min_steps(epsilon: float, delta: float, dimension: int, gamma: float) -> int:
    """I_min of the sequence without a secret state."""
    _positive(epsilon=epsilon)
    a = 2.0 * math.log(2.0 / delta)
    gap = math.sqrt(a + epsilon) - math.sqrt(a)
    return math.ceil(math.log(math.sqrt(2.0 * dimension) / (1.0 - gamma) / gap) / math.log(1.0 / gamma))


def sequential_steps(request: int, epsilon: float, delta: float, dimension: int, gamma: float,
                     factor: float = 1.0) -> int:
    """I_i for request i = 1, 2, ... of the sequence without a secret state."""
    if request < 1:
        raise ValueError(f"requests are numbered from 1, got {request!r}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    base = math.floor(sequential_min_steps(epsilon, delta, dimension, gamma) * factor)
    return base + math.ceil(math.log(math.log(4.0 * dimension * request / delta)) / math.log(1.0 / gamma))


def sequential_sigma(steps: int, epsilon: float, delta: float, M: float, m: float, n: int, gamma: float) -> float:
    """sigma_i of the sequence without a secret state, after I_i = steps steps."""
    _positive(epsilon=epsilon, M=M, m=m)
    a = 2.0 * math.log(2.0 / delta)
    g = gamma**steps
    gap = math.sqrt(a + 3.0 * epsilon) - math.sqrt(a + 2.0 * epsilon)
    return 8.0 * M * g / (m * n * (1.0 - g) * gap)

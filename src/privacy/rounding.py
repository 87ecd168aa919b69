"""Rounding on the safe side: every number a certificate rests on errs towards privacy.

Pure functions of numbers (numpy only). A certificate is computed in float64 from
closed forms, series and root finders, each exact only to a few units in the last place,
and the noise is drawn in float32. Left alone, those roundings fall on either side; here
they are pushed to the side that keeps the printed (epsilon, delta) an upper bound:

* a calibration aims at ``below_target(target)``, a hair under what was asked;
* a reported epsilon or delta is ``round_up(value)``, a hair above what was computed;
  with both, a calibrated certificate still reads <= its target;
* a noise scale is drawn as ``float32_at_least(sigma)``, never below the accounted sigma;
* a radius the model is projected or clamped to is ``float32_at_most`` / ``radius_inside``
  of the accounted one, so that the float32 model never lies outside the set accounted for;
* a Bernoulli rate compared with a float64 uniform is accounted as
  ``bernoulli_rate_bound(rate)``, the largest frequency such a comparison can produce.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "SAFETY_MARGIN",
    "below_target",
    "round_up",
    "float32_at_least",
    "float32_at_most",
    "radius_inside",
    "bernoulli_rate_bound",
]

# Relative margin for float64 evaluations of a certificate: four orders of magnitude above
# the worst rounding measured in src/privacy (~1e-13 relative), and far below anything a
# reader of a certificate can see.
SAFETY_MARGIN = 1e-9

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def below_target(target: float) -> float:
    """The value a calibration aims at: two margins under the target, so that a result
    recomputed from the calibrated noise (within one margin of this) and then rounded up
    by ``round_up`` still reads <= target."""
    return float(target) * (1.0 - 2.0 * SAFETY_MARGIN)


def round_up(value):
    """A computed epsilon or delta as printed: raised by the margin (None and inf kept)."""
    if value is None or math.isinf(value):
        return value
    return float(value) * (1.0 + SAFETY_MARGIN)


def float32_at_least(value: float) -> float:
    """The smallest float32 >= value, as a Python float: the noise scale actually multiplied
    into a float32 noise vector. torch would otherwise round sigma to the NEAREST float32,
    up to 6e-8 relative below the accounted sigma."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0) or value > _FLOAT32_MAX:
        raise ValueError(f"a noise scale must be a finite number in [0, {_FLOAT32_MAX:.4g}] (float32), got {value!r}")
    rounded = np.float32(value)
    if float(rounded) < value:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return float(rounded)


def float32_at_most(value: float) -> float:
    """The largest float32 <= value: a clamp bound the float32 model cannot exceed."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"a radius must be a finite number >= 0, got {value!r}")
    rounded = np.float32(min(value, _FLOAT32_MAX))
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(0))
    return float(rounded)


# The projection scales in float64 and rounds each float32 coordinate once (relative error
# <= 2^-24 = 6e-8 per coordinate, hence in the norm); aiming 1e-6 inside covers it.
_PROJECTION_SLACK = 1e-6


def radius_inside(radius: float) -> float:
    """The radius a float32 projection aims at so the projected model's norm is <= radius."""
    return float(radius) * (1.0 - _PROJECTION_SLACK)


def bernoulli_rate_bound(rate: float, bits: int = 53) -> float:
    """The largest probability that ``u < rate`` can have when u is a uniform on a grid of
    2^-bits (torch's float64 uniforms: k 2^-53 on the CPU, (k + 1/2) 2^-53 on CUDA, whose
    top value rounds to 1 and is mapped to 0): ceil(rate 2^bits) + 1 grid points.

    Poisson sampling that draws its memberships this way is accounted with this rate; it
    exceeds ``rate`` by at most 2^(1-bits), e.g. 8e-14 relative at rate 128/45000.
    """
    if not (isinstance(rate, (int, float, np.floating)) and 0 <= rate <= 1):
        raise ValueError(f"rate must be a number in [0, 1], got rate={rate!r}")
    if rate == 0:
        return 0.0
    scale = float(2**bits)
    return min(1.0, (math.ceil(rate * scale) + 1) / scale)

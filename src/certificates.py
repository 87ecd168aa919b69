"""What a certificate is made of, below every algorithm that states one (the unlearning
methods, the trainer that prints it, the ensemble, the request streams):

  * PrivacyPlan: the certificate an algorithm will deliver, known before any data is touched;
  * ComposedCertificate: the guarantee over every model a stream of requests deployed;
  * certificate_row: the keys a run logs and prints;
  * certificate_numbers / require_finite_certificate: an overflow in the math named by its keys;
  * certificate_scope: what a certificate covers (research or release mode).

No torch here: plain numbers and the config.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from src.errors import ConfigError


@dataclass
class PrivacyPlan:
    """The certificate an algorithm will deliver, known before any data is touched."""

    noisy_steps: int
    sigma_t: list[float]
    init_sigma: float
    certified_epsilon: float | None
    certified_delta: float | None
    epsilon_published: float | None
    certificate_valid: bool
    # Why the certificate does not hold, when it does not (compat switches...).
    invalid_reasons: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    # Plain-words notes printed under the certificate (how the original code would have
    # labelled this run, ...); they never change what is certified.
    remarks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {
            "noisy_steps": self.noisy_steps,
            "sigma_t": self.sigma_t,
            "init_sigma": self.init_sigma,
            "certified_epsilon": self.certified_epsilon,
            "certified_delta": self.certified_delta,
            "epsilon_published": self.epsilon_published,
            "certificate_valid": self.certificate_valid,
        }
        if self.invalid_reasons:
            out["certificate_invalid_because"] = self.invalid_reasons
        if self.remarks:
            out["remarks"] = self.remarks
        out.update(self.details)
        return out


@dataclass(frozen=True)
class ComposedCertificate:
    """The guarantee for an adversary who sees every model deployed by a stream of
    deletion requests so far (docs/requests.md); None when a request has none."""

    epsilon: float | None
    delta: float | None
    rule: str
    valid: bool = True

    def as_dict(self) -> dict:
        return {"all_models_epsilon": self.epsilon, "all_models_delta": self.delta,
                "all_models_composition": self.rule, "all_models_valid": self.valid}


def certificate_row(plan: PrivacyPlan, epsilon=None, delta=None) -> dict:
    """`epsilon`/`delta` are what the run claims (the reference's keys); `certified_*` is
    what the theory gives for the noise drawn; `epsilon_published` what the reference
    code would have printed."""
    return {
        "epsilon": plan.certified_epsilon if epsilon is None else epsilon,
        "delta": plan.certified_delta if delta is None else delta,
        "certified_epsilon": plan.certified_epsilon,
        "certified_delta": plan.certified_delta,
        "epsilon_published": plan.epsilon_published,
        "certificate_valid": plan.certificate_valid,
    }


# The largest noise scale a float32 noise vector can carry.
FLOAT32_MAX = 3.4028234663852886e38


@contextmanager
def certificate_numbers(keys: dict[str, object]):
    """Turn an overflow in the certificate's math into a ConfigError that names the keys.

    The schema admits only finite numbers, but finite values can still overflow what a
    certificate is made of (2 C0 with C0 = 1e308, e^epsilon with epsilon = 1e308, a sigma
    beyond float32). `keys` maps the dotted keys the certificate depends on to their values;
    the most extreme (farthest from 1 in magnitude) is named first."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # what overflows is checked, not warned about
            yield
    except (OverflowError, ValueError, ZeroDivisionError, FloatingPointError) as e:
        raise ConfigError(_overflow_message(keys, str(e))) from None


def require_finite_certificate(plan: PrivacyPlan, keys: dict[str, object]) -> None:
    """Every number of the plan finite, and every noise scale drawable in float32."""
    numbers = {"sigma": max(plan.sigma_t, default=0.0), "init_sigma": plan.init_sigma,
               "certified_epsilon": plan.certified_epsilon, "certified_delta": plan.certified_delta}
    for name, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(_overflow_message(keys, f"the certificate's {name} is {value}"))
    if numbers["sigma"] > FLOAT32_MAX or plan.init_sigma > FLOAT32_MAX:
        raise ConfigError(_overflow_message(keys, f"a noise scale of {max(numbers['sigma'], plan.init_sigma):.4g} "
                                                  "exceeds float32, in which the noise is drawn"))


def _overflow_message(keys: dict[str, object], detail: str) -> str:
    def extremity(item):
        value = item[1]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            return 0.0
        return abs(math.log10(abs(value)))

    ordered = sorted(keys.items(), key=extremity, reverse=True)
    (first, value), rest = ordered[0], ordered[1:]
    others = ", ".join(f"{k} = {v!r}" for k, v in rest)
    return (f"{first}: {value!r} gives no finite certificate ({detail}); with {others}. Use values within the "
            "range the accountant can represent (far from 1e308 and 1e-308)")


def certificate_scope(config) -> dict:
    """What a certificate covers, for every algorithm: the released model, and in research
    mode only while the seeds (which replay the noise) and the run's logs (which hold
    metrics of the model before its noise) stay private."""
    if config.secure_rng:
        return {"releasable": True,
                "certificate_scope": "holds for the released model and this run's logs: the noise came from the "
                                     "operating system's entropy and was never written, and no metric of a model "
                                     "before its certificate was logged or printed (secure_rng: true)"}
    return {"releasable": False,
            "certificate_scope": "holds for the released model only while the config's seeds (global_seed, "
                                 "training.dp_sgd.seed), which replay the noise, and this run's logs, which hold "
                                 "metrics of the model before its noise, stay private (research mode; "
                                 "secure_rng: true makes a releasable run)"}

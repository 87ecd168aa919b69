"""DP-SGD for a forget set: the noise multiplier for a group target, and what it certifies.

Pure functions of numbers. The target (epsilon, delta) is for the whole forget set of k
examples (the model must not reveal whether they were trained on). Three rules
(`compat.group_privacy`):

* ``exact`` (default): the group as one Poisson-subsampled Gaussian with Binomial(k, q)
  members per batch, composed exactly by privacy loss distributions (group_pld.py). Its
  noise is searched below the ``tight`` rule's, which it must never exceed.
* ``tight``: the per-example budget of the (eps, delta) group lemma (dpsgd.py), calibrated
  with the RDP accountant; the group certificate is the lemma applied to what the
  accountant achieved. For a group of one the lemma is the identity, so the per-example
  guarantee is accounted by the same privacy loss distributions as ``exact`` (the RDP ->
  (eps, delta) conversion alone leaves a third of epsilon 1 unused).
* ``upstream``: the reference's per-example delta (too large, D4): no valid certificate.

Every accountant here assumes Poisson sampling at ``accounted_sampling_rate``: the
configured rate B / n raised to the largest frequency a float64 Bernoulli draw can have
(rounding.bernoulli_rate_bound). With fixed-size shuffled batches (``shuffle``) nothing
is certified.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .dpsgd import calibrate_noise_multiplier, group_privacy_to_example, group_privacy_to_group
from .group_pld import calibrate_exact_group
from .rounding import below_target, bernoulli_rate_bound, round_up

__all__ = ["GROUP_RULES", "DPSGDCalibration", "calibrate_dp_sgd"]

GROUP_RULES = ("exact", "tight", "upstream")


@dataclass(frozen=True)
class DPSGDCalibration:
    """How a DP-SGD model is trained and what it guarantees; stored in its checkpoint."""

    l2_norm_clip: float
    noise_multiplier: float
    sampling_rate: float  # B / n: the expected batch size the noisy sum is divided by
    steps: int
    sampling: str  # poisson | shuffle
    group_size: int  # k = |forget set|
    group_rule: str  # exact | tight | upstream
    target_epsilon: float  # for the group (the whole forget set)
    target_delta: float
    train_epsilon: float | None  # per example, the budget the lemma calibrated for (None: exact)
    train_delta: float | None
    achieved_train_epsilon: float | None
    certified_epsilon: float | None  # for the group, rounded up (None: no certificate)
    certified_delta: float | None
    seconds: float
    # The rate the accountants used (>= sampling_rate, see rounding.bernoulli_rate_bound);
    # None in records that predate it, which then account at sampling_rate.
    accounted_sampling_rate: float | None = None
    lemma_noise_multiplier: float | None = None  # what the tight lemma would need (exact rule)

    @property
    def certificate_valid(self) -> bool:
        return (self.sampling == "poisson" and self.certified_epsilon is not None
                and self.certified_epsilon <= self.target_epsilon and self.certified_delta <= self.target_delta)

    def invalid_reasons(self) -> list[str]:
        reasons = []
        if self.sampling != "poisson":
            reasons.append("compat.dp_sgd_sampling: shuffle trains with fixed-size shuffled batches, but the "
                           "accountants assume Poisson sampling (docs/differences.md#dp-sgd-sampling), so no "
                           "certificate follows")
        elif not self.certificate_valid and self.train_delta is None:
            reasons.append(f"compat.group_privacy: {self.group_rule}: the accountant gives the forget set delta "
                           f"{self.certified_delta!r}, above the target {self.target_delta:g}")
        elif not self.certificate_valid:
            reasons.append(f"compat.group_privacy: {self.group_rule}: the per-example delta {self.train_delta:.3g} "
                           f"gives the forget set only delta {self.certified_delta:.3g} by group privacy, above the "
                           f"target {self.target_delta:g} (docs/differences.md#group-privacy)")
        return reasons


def calibrate_dp_sgd(*, target_epsilon: float, target_delta: float, l2_norm_clip: float, batch_size: int,
                     epochs: int, train_size: int, forget_size: int, group_rule: str,
                     sampling: str) -> DPSGDCalibration:
    """The noise multiplier of DP-SGD training (``epochs`` passes of batches of expected
    size ``batch_size`` over ``train_size`` examples) for the group target, by ``group_rule``."""
    if group_rule not in GROUP_RULES:
        raise ValueError(f"group_rule must be one of {GROUP_RULES}, got group_rule={group_rule!r}")
    started = time.perf_counter()
    q = batch_size / train_size
    steps = epochs * math.ceil(train_size / batch_size)
    # Shuffled batches are not certified at all; they keep the reference's rate.
    accounted_q = bernoulli_rate_bound(q) if sampling == "poisson" else q
    lemma_rule = "tight" if group_rule == "exact" else group_rule
    eps1, delta1 = group_privacy_to_example(target_epsilon, target_delta, forget_size, rule=lemma_rule)
    lemma = calibrate_noise_multiplier(below_target(eps1), delta1, accounted_q, steps)
    common = dict(l2_norm_clip=l2_norm_clip, sampling_rate=q, accounted_sampling_rate=accounted_q, steps=steps,
                  sampling=sampling, group_size=forget_size, group_rule=group_rule, target_epsilon=target_epsilon,
                  target_delta=target_delta)
    if group_rule == "exact" or (group_rule == "tight" and forget_size == 1):
        exact = calibrate_exact_group(target_epsilon, below_target(target_delta), accounted_q, steps, forget_size,
                                      upper=lemma.noise_multiplier)
        certified = (target_epsilon, round_up(exact.delta)) if sampling == "poisson" else (None, None)
        per_example = (None, None) if group_rule == "exact" else (target_epsilon, below_target(target_delta))
        return DPSGDCalibration(**common, noise_multiplier=exact.noise_multiplier, train_epsilon=per_example[0],
                                train_delta=per_example[1], achieved_train_epsilon=per_example[0], certified_epsilon=certified[0],
                                certified_delta=certified[1], seconds=time.perf_counter() - started,
                                lemma_noise_multiplier=lemma.noise_multiplier)
    certified_eps = certified_delta = None
    if sampling == "poisson":
        # The tight group lemma applied to what the accountant really achieved.
        eps_k, delta_k = group_privacy_to_group(lemma.achieved_epsilon, delta1, forget_size, rule="tight")
        certified_eps, certified_delta = round_up(eps_k), round_up(delta_k)
    return DPSGDCalibration(**common, noise_multiplier=lemma.noise_multiplier, train_epsilon=eps1,
                            train_delta=delta1, achieved_train_epsilon=lemma.achieved_epsilon,
                            certified_epsilon=certified_eps, certified_delta=certified_delta,
                            seconds=time.perf_counter() - started, lemma_noise_multiplier=lemma.noise_multiplier)

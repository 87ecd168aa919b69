"""An unlearning method from outside the repository (docs/methods.md shows this file).

Max-entropy forgetting: for every retain batch, with the forget batches cycled alongside,
minimise

    CE(B_r) + weight * CE(B_f, uniform),

the retain loss plus the cross-entropy of the forget batch against the uniform
distribution over classes: the model keeps fitting the retain set and is pulled towards
knowing nothing about the forget set. An empirical heuristic: no certificate.

Run it with `unlearning.algorithm: path/to/max_entropy.py:MaxEntropy` (relative to the
config file) and its keys under `unlearning.max_entropy:`.
"""

from __future__ import annotations

from pydantic import Field

from src.config import FiniteFloat, Section
from src.unlearning.empirical import EmpiricalUnlearning


class MaxEntropyConfig(Section):
    """`unlearning.max_entropy:` the method's own keys, declared beside its code."""

    weight: FiniteFloat = Field(1.0, ge=0)  # of the forget term


class MaxEntropy(EmpiricalUnlearning):
    name = "max_entropy"  # the key of its config section
    section = MaxEntropyConfig
    section_default = MaxEntropyConfig()  # used when a config leaves the section out

    def run_epoch(self, e, tally) -> None:
        """Epoch e (0-based): one step per retain batch, the forget batches cycled alongside."""
        weight = self.config.unlearning.max_entropy.weight
        if e == 0:
            self.forget = self.forget_batches.cycle()
        for xr, yr in self.retain_batches.epoch():
            xf, yf = next(self.forget)

            def loss():
                retain_loss, correct = self.cross_entropy(xr, yr)
                forget_logits = self.model(xf)
                uniform = -forget_logits.log_softmax(1).mean(1).mean()  # CE against 1/C per class
                return retain_loss + weight * uniform, correct

            loss_value, correct = self.descend(loss, tally, yr.shape[0] + yf.shape[0])
            tally.retain(loss_value, correct, yr.shape[0])

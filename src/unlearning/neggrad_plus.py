"""NegGrad+ (Kurmanji et al.; `negative_grad` in SalUn/RUM/sharp-unlearn): for every retain
batch, with the forget batches cycled alongside (a new permutation whenever they run out),
minimise

    alpha * CE(B_r) - (1 - alpha) * CE(B_f).

alpha = 1 is FT step for step (same retain batches); alpha = 0 is NegGrad on cycled forget
batches, n_r / n_f times more steps per epoch.
"""

from __future__ import annotations

from pydantic import Field

from src.config import FiniteFloat, Section
from src.unlearning.empirical import EmpiricalUnlearning


class NegGradPlusConfig(Section):
    """`unlearning.neggrad_plus:`"""

    alpha: FiniteFloat = Field(0.99, ge=0, le=1)  # weight of the retain loss


def neggrad_plus_loss(method, alpha, xr, yr, xf, yf):
    retain_loss, correct = method.cross_entropy(xr, yr)
    forget_loss, _ = method.cross_entropy(xf, yf)
    return alpha * retain_loss - (1 - alpha) * forget_loss, (retain_loss.detach(), correct)


class NegGradPlus(EmpiricalUnlearning):
    name = "neggrad_plus"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = NegGradPlusConfig
    section_default = NegGradPlusConfig()

    def run_epoch(self, e, tally) -> None:
        alpha = self.config.unlearning.neggrad_plus.alpha
        if not hasattr(self, "_forget"):
            self._forget = self.forget_batches.forget_cycle(self.config.compat)
        for xr, yr in self.retain_batches.epoch():
            xf, yf = next(self._forget)
            _, (retain_loss, correct) = self.descend(
                lambda: neggrad_plus_loss(self, alpha, xr, yr, xf, yf), tally, yr.shape[-1] + yf.shape[-1])
            tally.retain(retain_loss, correct, yr.shape[-1])

"""Sharp MinMax (Tang & Khanna, "Sharpness-Aware Machine Unlearning"): NegGrad+ split over
two parameter sets by a saliency mask m (src/unlearning/saliency.py; m = 1 are the "forget
parameters"), each half-step with its own SAM sign and its own optimizer state:

  1. retain half-step: the SAM gradient (sign `retain_sign`, normally min) of
     alpha * CE(B_r), times (1 - m), steps optimizer_r;
  2. forget half-step, at the updated weights: the SAM gradient (sign `forget_sign`,
     normally max) of -(1 - alpha) * CE(B_f), times m, steps optimizer_f.

Both optimizers are the `unlearning:` optimizer over all parameters (weight decay included,
as upstream); the SAM perturbation uses the half-step's full gradient, the mask only the
final one. Batches as NegGrad+: every retain batch, forget batches cycled. `mask_select:
smallest` reproduces the mask sharp-unlearn's code builds (its README describes the largest).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from src.config import FiniteFloat, SAMConfig, Section
from src.unlearning.empirical import EmpiricalUnlearning
from src.unlearning.saliency import saliency_mask


class SharpMinMaxConfig(Section):
    """`unlearning.sharp_minmax:`"""

    alpha: FiniteFloat = Field(0.99, ge=0, le=1)
    mask_ratio: FiniteFloat = Field(0.5, gt=0, lt=1)
    mask_select: Literal["largest", "smallest"] = "largest"
    retain_sign: Literal["min", "max"] = "min"
    forget_sign: Literal["min", "max"] = "max"
    rho: FiniteFloat = Field(0.1, ge=0)
    adaptive: bool = False
    lamb: FiniteFloat = Field(1.0, ge=0)


class SharpMinMax(EmpiricalUnlearning):
    name = "sharp_minmax"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = SharpMinMaxConfig
    section_default = SharpMinMaxConfig()
    accepts_sam = False  # its own SAM keys, one sign per half-step

    def setup(self, tally) -> None:
        s = self.config.unlearning.sharp_minmax
        saliency = self.saliency(tally)
        forget_params = saliency_mask(saliency, s.mask_ratio, s.mask_select).to(self.model.theta.dtype)
        self.masks = (1 - forget_params, forget_params)
        self.sams = tuple(SAMConfig(rho=s.rho, adaptive=s.adaptive, lamb=s.lamb, sign=sign)
                          for sign in (s.retain_sign, s.forget_sign))
        self.forget_optimizer = self.new_optimizer()
        self._forget = self.forget_batches.forget_cycle(self.config.compat)

    def run_epoch(self, e, tally) -> None:
        alpha = self.config.unlearning.sharp_minmax.alpha
        retain_mask, forget_mask = self.masks
        retain_sam, forget_sam = self.sams
        for xr, yr in self.retain_batches.epoch():
            xf, yf = next(self._forget)

            def retain_loss(xr=xr, yr=yr):
                loss, correct = self.cross_entropy(xr, yr)
                return alpha * loss, (loss.detach(), correct)

            def forget_loss(xf=xf, yf=yf):
                loss, correct = self.cross_entropy(xf, yf)
                return -(1 - alpha) * loss, correct

            if self.config.compat.sharp_minmax_mask == "perturbed_only":
                # sharp-unlearn: only g_adv is masked, so a frozen coordinate takes (1 - s lamb) g:
                # 2g in the max step (docs/differences.md#sharp-minmax-mask)
                _, (loss, correct) = self.descend(retain_loss, tally, yr.shape[-1], sam=retain_sam,
                                                  adv_mask=retain_mask)
                self.descend(forget_loss, tally, yf.shape[-1], optimizer=self.forget_optimizer, sam=forget_sam,
                             adv_mask=forget_mask)
            else:
                _, (loss, correct) = self.descend(retain_loss, tally, yr.shape[-1], mask=retain_mask,
                                                  sam=retain_sam)
                self.descend(forget_loss, tally, yf.shape[-1], optimizer=self.forget_optimizer, mask=forget_mask,
                             sam=forget_sam)
            tally.retain(loss, correct, yr.shape[-1])

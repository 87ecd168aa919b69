"""A user's own unlearning method: Forget Margin.

For every retain batch, with the forget batches cycled alongside, minimise

    CE(retain batch) + weight * mean over the forget batch of max(0, z_y - max_{k != y} z_k),

the retain loss plus a hinge on each forget example's margin for its own label: the model
keeps fitting the retain set while the forget examples are pushed until their label no
longer wins. An empirical heuristic, as every method from outside the repository: its runs
get every forgetting metric, never a certificate.

Run it with `unlearning.algorithm: path/to/my_method.py:ForgetMargin` and its keys under
`unlearning.forget_margin:`.
"""

import torch
from pydantic import Field
from torch.nn import functional as F

from src.config import FiniteFloat, Section
from src.unlearning.empirical import EmpiricalUnlearning


class ForgetMarginConfig(Section):
    """`unlearning.forget_margin:` the method's own keys, declared beside its code."""

    weight: FiniteFloat = Field(1.0, ge=0)  # of the forget term


class ForgetMargin(EmpiricalUnlearning):
    name = "forget_margin"  # the key of its config section
    section = ForgetMarginConfig
    section_default = ForgetMarginConfig()

    def run_epoch(self, e, tally) -> None:
        """Epoch e (0-based): one optimizer step per retain batch."""
        weight = self.config.unlearning.forget_margin.weight
        if e == 0:
            self.forget = self.forget_batches.cycle()
        for x, y in self.retain_batches.epoch():
            xf, yf = next(self.forget)

            def loss():
                retain_loss, correct = self.cross_entropy(x, y)
                logits = self.model(xf)
                own = logits.gather(1, yf[:, None]).squeeze(1)
                others = logits.masked_fill(F.one_hot(yf, logits.shape[1]).bool(), float("-inf")).amax(1)
                return retain_loss + weight * torch.relu(own - others).mean(), correct

            retain_loss, correct = self.descend(loss, tally, y.shape[0] + yf.shape[0])
            tally.retain(retain_loss, correct, y.shape[0])

"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to the salient
parameters. A mask m (src/unlearning/saliency.py) is computed once from the forget
gradient at the trained model; every RL update's gradient is multiplied by m. With
`restore_masked` (SalUn's 2026 fix) the frozen coordinates are put back to theta_o after
every step and their optimizer state zeroed, so weight decay cannot move them; false
reproduces the drift of the upstream code.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from src.config import FiniteFloat
from src.unlearning.random_label import RandomLabelConfig, RandomLabelLoop
from src.unlearning.saliency import saliency_mask


class SalUnConfig(RandomLabelConfig):
    """`unlearning.salun:` the random-label keys and the mask's."""

    mask_ratio: FiniteFloat = Field(0.5, gt=0, le=1)
    # largest: the paper (and SalUn's code since 2024-05); smallest: RUM / sharp-unlearn code.
    mask_select: Literal["largest", "smallest"] = "largest"
    restore_masked: bool = True


class SalUn(RandomLabelLoop):
    name = "salun"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = SalUnConfig
    section_default = SalUnConfig()

    @property
    def options(self):
        return self.config.unlearning.salun

    def setup(self, tally) -> None:
        saliency = self.saliency(tally)
        self.frozen = ~saliency_mask(saliency, self.options.mask_ratio, self.options.mask_select)
        self.mask = (~self.frozen).to(self.model.theta.dtype)

    def after_update(self, optimizer) -> None:
        if not self.options.restore_masked:
            return
        with torch.no_grad():
            self.model.theta[self.frozen] = self.original[self.frozen]
            for state in optimizer.optimizer.state_tensors():
                state[self.frozen] = 0

"""FT: fine-tune on the retain set (Warnecke et al.; the SalUn/RUM baseline): descend on
CE(B_r) for every retain batch, `unlearning.epochs` times. No keys of its own."""

from __future__ import annotations

from src.unlearning.empirical import EmpiricalUnlearning


class FineTune(EmpiricalUnlearning):
    name = "ft"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)

    def run_epoch(self, e, tally) -> None:
        for x, y in self.retain_batches.epoch():
            loss, correct = self.descend(lambda: self.cross_entropy(x, y), tally, y.shape[-1])
            tally.retain(loss, correct, y.shape[-1])

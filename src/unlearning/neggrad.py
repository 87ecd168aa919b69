"""GA / NegGrad: gradient ascent on the forget set (Golatkar et al.; Thudi et al.): minimise
-CE(B_f) over the forget batches only, ceil(n_f / b) steps per epoch. Small learning
rates (1e-4 in the SalUn/RUM recipes): the loss is unbounded. No keys of its own."""

from __future__ import annotations

from src.unlearning.empirical import EmpiricalUnlearning


def ascent(loss_and_correct):
    loss, correct = loss_and_correct
    return -loss, correct


class NegGrad(EmpiricalUnlearning):
    name = "ga"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)

    def steps_per_epoch(self) -> int:
        return len(self.forget_batches)

    def run_epoch(self, e, tally) -> None:
        for x, y in self.forget_batches.epoch():
            self.descend(lambda: ascent(self.cross_entropy(x, y)), tally, y.shape[-1])

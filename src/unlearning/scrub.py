"""SCRUB (Kurmanji et al. 2023), as in sharp-unlearn's unlearn/scrub.py: a student (the
trained model) moves away from a frozen teacher (its copy) on the forget set and stays close
to it on the retain set. With p^T = softmax(z / T) and

    KL_T(B) = T^2 * mean_{i in B} KL(p_teacher^T(x_i) || p_student^T(x_i)),

each epoch e (0-based) first makes one pass over the forget batches minimising -KL_T(B_f)
("max-steps", while e < msteps), then one pass over the retain batches minimising
gamma * CE(B_r) + beta * KL_T(B_r). One optimizer state serves both passes.

`msteps_inclusive: true` reproduces sharp-unlearn's off-by-one (max-steps while e <= msteps,
msteps + 1 passes); the default counts as the original SCRUB (msteps passes). msteps = -1 never
ascends. `beta` is the KL weight (the original's alpha); the feature-distillation term is absent.
"""

from __future__ import annotations

from pydantic import Field

from src.config import FiniteFloat, Section
from src.unlearning.empirical import EmpiricalUnlearning, mean_cross_entropy
from torch.nn import functional as F


class ScrubConfig(Section):
    """`unlearning.scrub:` (starting point of the original: kd_T 4, gamma 0.99, beta 0.001)."""

    kd_T: FiniteFloat = Field(4.0, gt=0)
    beta: FiniteFloat = Field(0.001, ge=0)
    gamma: FiniteFloat = Field(0.99, ge=0)
    msteps: int = Field(2, ge=-1)
    msteps_inclusive: bool = False


def distillation_kl(student_logits, teacher_logits, temperature: float):
    """T^2 * batch-mean KL(teacher || student) of the temperature-scaled softmaxes; of each
    member's batch for an ensemble's logits [N, b, C] -> [N]."""
    if student_logits.dim() == 2:
        return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                        F.log_softmax(teacher_logits / temperature, dim=1),
                        log_target=True, reduction="batchmean") * temperature ** 2
    pointwise = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                         F.log_softmax(teacher_logits / temperature, dim=-1), log_target=True, reduction="none")
    return pointwise.sum((-2, -1)) / student_logits.shape[-2] * temperature ** 2


class Scrub(EmpiricalUnlearning):
    name = "scrub"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = ScrubConfig
    section_default = ScrubConfig()

    def ascends(self, e: int) -> bool:
        s = self.config.unlearning.scrub
        return e <= s.msteps if s.msteps_inclusive else e < s.msteps

    def steps_per_epoch(self) -> int:
        # The schedule spans every step; max-steps run in the first epochs only.
        epochs = self.config.unlearning.epochs
        ascending = sum(self.ascends(e) for e in range(epochs))
        return len(self.retain_batches) + -(-ascending * len(self.forget_batches) // epochs)

    def teacher(self, x):
        return self.model(x, self.original).detach()

    def run_epoch(self, e, tally) -> None:
        s = self.config.unlearning.scrub
        if self.ascends(e):
            for x, y in self.forget_batches.epoch():
                def max_loss(x=x):
                    return -distillation_kl(self.model(x), self.teacher(x), s.kd_T), None
                self.descend(max_loss, tally, y.shape[-1])
        for x, y in self.retain_batches.epoch():
            def min_loss(x=x, y=y):
                logits = self.model(x)
                ce = mean_cross_entropy(logits, y)
                loss = s.gamma * ce
                if s.beta:  # beta 0: no teacher forward at all
                    loss = loss + s.beta * distillation_kl(logits, self.teacher(x), s.kd_T)
                return loss, (ce.detach(), (logits.detach().argmax(-1) == y).sum(-1))
            _, (ce, correct) = self.descend(min_loss, tally, y.shape[-1])
            tally.retain(ce, correct, y.shape[-1])

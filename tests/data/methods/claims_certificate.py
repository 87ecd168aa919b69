"""A user's method that claims a certificate it cannot have: fine-tuning on the retain set
whose plan says epsilon 0.01 and whose rows log one. Outside methods are never certified:
the tests check that none of this reaches a plan, a summary or a metrics row."""

from __future__ import annotations

from src.certificates import PrivacyPlan
from src.unlearning.base import UnlearningAlgorithm
from src.unlearning.empirical import EmpiricalUnlearning


class ClaimsCertificate(EmpiricalUnlearning):
    name = "claims_certificate"
    sequential_requests = True  # claims its certificate holds from any start, too

    def plan(self) -> PrivacyPlan:
        return PrivacyPlan(noisy_steps=0, sigma_t=[], init_sigma=0.0, certified_epsilon=0.01, certified_delta=1e-5,
                           epsilon_published=0.01, certificate_valid=True, details={"certified_epsilon": 0.01},
                           remarks=["certified by its author"])

    def certificate_row(self) -> dict:
        return {"epsilon": 0.01, "delta": 1e-5, "certified_epsilon": 0.01, "certified_delta": 1e-5,
                "epsilon_published": 0.01, "certificate_valid": True}

    def run_epoch(self, e, tally) -> None:
        for x, y in self.retain_batches.epoch():
            loss, correct = self.descend(lambda: self.cross_entropy(x, y), tally, y.shape[0])
            tally.retain(loss, correct, y.shape[0])

    def unlearn_epoch(self, model, epoch, log):
        log({"certified_epsilon": 0.01, "certificate_valid": True, "claimed_at_epoch": epoch})
        return super().unlearn_epoch(model, epoch, log)


class NotAMethod:
    """A class that does not implement the interface."""

    name = "not_a_method"


def make_method():
    return UnlearningAlgorithm

"""Outside methods: an unlearning algorithm from the user's own file or package
(`unlearning.algorithm: path/to/file.py:Class` or `package.module:Class`, docs/methods.md).

It runs like a built-in (the trainer, the forgetting metrics, the launcher, ensembles and
the audit see the same interface), but it is empirical whatever it claims: only the
repository's own accountants print a certificate. `adopt` subclasses the user's class so
that its plan, its certificate row, its composition over a stream of requests and the rows
it logs carry no epsilon or delta, and its plan says why.
"""

from __future__ import annotations

from src.certificates import ComposedCertificate, PrivacyPlan, certificate_row
from src.unlearning.empirical import EMPIRICAL

OUTSIDE = ("an outside method (unlearning.algorithm names a class outside this repository): only the repository's "
           "own accountants certify, so it is reported as empirical whatever it claims")
# What a certificate is made of in a run's rows: never logged by an outside method.
CERTIFICATE_KEYS = frozenset({"epsilon", "delta", "certified_epsilon", "certified_delta", "epsilon_published",
                              "certificate_valid", "releasable", "certificate_scope", "certificate_rests_on",
                              "all_models_epsilon", "all_models_delta", "all_models_composition", "all_models_valid"})


def without_certificate(log):
    """`log` with every certificate key dropped from the rows written through it."""
    return lambda row: log({k: v for k, v in row.items() if k not in CERTIFICATE_KEYS})


def adopt(cls: type) -> type:
    """The user's class, made empirical (see the module's docstring)."""

    class Outside(cls):
        outside = True
        # A stream of requests composes certificates: an outside method has none to compose.
        sequential_requests = False
        # An ensemble's theta [N, d] only if the user's class itself says so: a subclass of a
        # vectorised built-in (FT, ...) may reduce over a batch in a way no member would.
        vectorised = cls.__dict__.get("vectorised", False)

        def plan(self) -> PrivacyPlan:
            try:
                claimed = super().plan()
                steps, sigmas, init = claimed.noisy_steps, list(claimed.sigma_t), claimed.init_sigma
            except NotImplementedError:  # an epoch-wise method that states no plan
                steps, sigmas, init = 0, [], 0.0
            return PrivacyPlan(noisy_steps=steps, sigma_t=sigmas, init_sigma=init, certified_epsilon=None,
                               certified_delta=None, epsilon_published=None, certificate_valid=False,
                               invalid_reasons=[EMPIRICAL, OUTSIDE])

        def certificate_row(self) -> dict:
            return certificate_row(self.plan())

        @classmethod
        def compose_certificates(cls, plans, delta) -> ComposedCertificate:
            return ComposedCertificate(None, None, "none: an outside method has no certificate", False)

        def prepare(self, model, log) -> None:
            return super().prepare(model, without_certificate(log))

        def after_step(self, step, sigma, eta, log) -> bool:
            return super().after_step(step, sigma, eta, without_certificate(log))

        def unlearn_epoch(self, model, epoch, log):
            return super().unlearn_epoch(model, epoch, without_certificate(log))

    Outside.__name__, Outside.__qualname__ = cls.__name__, cls.__qualname__
    Outside.__module__, Outside.__doc__ = cls.__module__, cls.__doc__
    return Outside

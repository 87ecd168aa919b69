"""Output Perturbation (config name "dp-baseline"): project the trained model onto the
ball of radius C0 and add Gaussian noise once (the original code); the whole budget is then
noise-free fine-tuning.

Two models in the ball are at most 2 C0 apart: the Gaussian mechanism with sensitivity
2 C0. `calibration: classical` is the reference's Dwork-Roth sigma; `analytic` the
smallest sigma with theta_eps(2 C0 / sigma) <= delta (D14). Either way the certified delta
is the hockey-stick divergence of the noise, theta_eps(2 C0 / sigma), evaluated as an upper
bound; the noise drawn is sigma rounded up to float32, never less.
"""

from __future__ import annotations

from functools import cached_property

from typing import Literal

from pydantic import Field

from src.certificates import ComposedCertificate, PrivacyPlan, certificate_row
from src.config import FiniteFloat, Section
from src.privacy.composition import gaussian_composition
from src.privacy.gaussian import output_perturbation_sigma, theta_eps_upper
from src.privacy.pabi import init_ball_radius
from src.unlearning.base import UnlearningAlgorithm, require_positive_init_clip, require_section
from src.unlearning.initial_projection import initial_projection_


class DPBaselineConfig(Section):
    """`unlearning.dp-baseline:` the keys of Output Perturbation."""

    epsilon_target: FiniteFloat = Field(gt=0)
    # classical: the reference's Dwork-Roth sigma; analytic: smallest sigma with
    # theta_eps(2 C0 / sigma) <= delta (docs/differences.md).
    calibration: Literal["classical", "analytic"] = "classical"


class OutputPerturbation(UnlearningAlgorithm):
    name = "dp-baseline"
    vectorised = True  # runs on theta [N, d] (seeds: N)
    section = DPBaselineConfig
    sequential_requests = True  # any model is projected into the C0-ball before the noise
    projects_initially = True

    @classmethod
    def check_config(cls, config) -> None:
        require_section(config, "dp-baseline", cls.name)
        require_positive_init_clip(config, "Output Perturbation")

    @classmethod
    def certificate_keys(cls, config) -> dict:
        u = config.unlearning
        return {"unlearning.init_model_clip": u.init_model_clip, "unlearning.delta": u.delta,
                "unlearning.dp-baseline.epsilon_target": u.dp_baseline.epsilon_target}

    @cached_property
    def sigma(self) -> float:
        u = self.config.unlearning
        radius = init_ball_radius(u.init_model_clip, u.init_model_clip_type, self.context.num_parameters)
        return output_perturbation_sigma(u.dp_baseline.epsilon_target, u.delta, radius,
                                         calibration=u.dp_baseline.calibration)

    def plan(self) -> PrivacyPlan:
        u = self.config.unlearning
        epsilon = u.dp_baseline.epsilon_target
        radius = init_ball_radius(u.init_model_clip, u.init_model_clip_type, self.context.num_parameters)
        delta = float(theta_eps_upper(epsilon, 2 * radius / self.sigma))  # an upper bound, rounding included
        reasons = [] if delta <= u.delta else [
            f"the {u.dp_baseline.calibration} sigma {self.sigma:.4g} gives delta {delta:.3g} at epsilon {epsilon:g}, "
            f"above the target {u.delta:g}"]
        return PrivacyPlan(noisy_steps=0, sigma_t=[], init_sigma=self.sigma, certified_epsilon=epsilon,
                           certified_delta=delta, epsilon_published=epsilon, certificate_valid=not reasons,
                           invalid_reasons=reasons,
                           details={"calibration": u.dp_baseline.calibration,
                                    "sensitivity_over_sigma": 2 * radius / self.sigma})

    @classmethod
    def compose_certificates(cls, plans, delta) -> ComposedCertificate:
        """Gaussian mechanisms compose exactly: mu = sqrt(sum mu_r^2), eps at delta."""
        epsilon, mu = gaussian_composition([p.details["sensitivity_over_sigma"] for p in plans], delta)
        return ComposedCertificate(epsilon, float(delta), f"Gaussian composition (mu = {mu:.4g})",
                                   all(p.certificate_valid for p in plans))

    def output_noise_std(self) -> float:
        return self.sigma

    def gaussian_equivalent_mu(self) -> float:
        """Sensitivity over sigma: the diameter of the initial projection's set, 2 C0."""
        return self.plan().details["sensitivity_over_sigma"]

    def prepare(self, model, log) -> None:
        initial_projection_(model.theta, self.config, self.context, log, sigma0=self.sigma)
        self.finished = True

    def certificate_row(self) -> dict:
        u = self.config.unlearning
        return certificate_row(self.plan(), epsilon=u.dp_baseline.epsilon_target, delta=u.delta)

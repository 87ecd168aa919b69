"""Retrain from scratch on the retain set: exact unlearning, epsilon = 0.

A fresh initialisation (optionally zeros + noise + clip, or clip + noise) and then the
post-unlearning fine-tuning for the whole budget (the original code).
"""

from __future__ import annotations

import torch

from src.certificates import PrivacyPlan, certificate_row
from src.config import Section
from src.models.model import ModelFactory
from src.noise import project_l2_
from src.seeds import derive_seed
from src.unlearning.base import UnlearningAlgorithm


class RetrainConfig(Section):
    """`unlearning.retrain:` how the fresh model starts."""

    start_from_all_zeros: bool = False
    clip_and_noise: bool = False


class Retrain(UnlearningAlgorithm):
    name = "retrain"
    section = RetrainConfig
    sequential_requests = True  # the deployed model is discarded: retrained on what remains
    # A missing section means both flags false (the reference crashed on it).
    section_default = RetrainConfig()

    def plan(self) -> PrivacyPlan:
        u = self.config.unlearning
        noisy_init = u.retrain.start_from_all_zeros or u.retrain.clip_and_noise
        # The retrained model never saw the forget set: the output is exactly what a
        # model of the retain set alone would be, whatever the initialisation.
        return PrivacyPlan(noisy_steps=0, sigma_t=[], init_sigma=u.init_sigma if noisy_init else 0.0,
                           certified_epsilon=0.0, certified_delta=0.0, epsilon_published=0.0,
                           certificate_valid=True)

    def prepare(self, model, log) -> None:
        config = self.config
        retrain = config.unlearning.retrain
        # One fresh initialisation per ensemble member, each from its own seed.
        seeds = self.context.member_seeds or (config.global_seed,)
        flat = torch.stack([self._fresh_init(seed) for seed in seeds]).view_as(model.theta).to(model.device)
        sigma0, radius = config.unlearning.init_sigma, config.unlearning.init_model_clip
        with torch.no_grad():
            model.theta.copy_(flat)
            theta = model.theta
            if retrain.start_from_all_zeros:
                theta.zero_()
                self.context.noise.add_fresh_(theta, sigma0)
                project_l2_(theta, radius)
            if retrain.clip_and_noise:
                project_l2_(theta, radius)
                self.context.noise.add_fresh_(theta, sigma0)
        if (retrain.start_from_all_zeros or retrain.clip_and_noise) and sigma0:
            log({"init_sigma": sigma0})
        self.finished = True

    def _fresh_init(self, seed: int) -> torch.Tensor:
        config = self.config
        fresh = ModelFactory.create_model(config.model.name, config.model.n_classes, self.context.input_shape,
                                          seed=derive_seed(seed, "retrain-init"))
        return torch.cat([p.detach().reshape(-1) for p in fresh.parameters()])

    def certificate_row(self) -> dict:
        # The reference logs the target delta beside epsilon 0; the figures filter on epsilon.
        return certificate_row(self.plan(), epsilon=0.0, delta=self.config.unlearning.delta)

"""DP-SGD (config name "dp-sgd"): the model was trained with DP-SGD, so unlearning is a
no-op followed by noise-free fine-tuning (upstream.md 3.6). The per-example guarantee
becomes one for the whole forget set by group privacy.

The certificate depends on how the model was trained, so the checkpoint records it and a
model trained otherwise (or for another forget-set size) is refused.
"""

from __future__ import annotations

from functools import cached_property

from src.errors import CheckpointError, ConfigError
from src.training.dp_sgd import calibrate
from src.unlearning.base import PrivacyPlan, UnlearningAlgorithm, certificate_row, register

# Fields of the training record that the certificate depends on.
_MUST_MATCH = ("noise_multiplier", "group_size", "sampling", "group_rule", "sampling_rate", "steps", "l2_norm_clip")


@register
class DPSGDGroupPrivacy(UnlearningAlgorithm):
    name = "dp-sgd"
    noise_after_pretraining = False

    @classmethod
    def check_config(cls, config) -> None:
        if config.training.dp_sgd is None:
            raise ConfigError("training.dp_sgd: required when unlearning.algorithm is 'dp-sgd' (the certificate comes "
                              "from DP-SGD training: l2_norm_clip, target_epsilon, target_delta, seed)")

    @cached_property
    def calibration(self):
        sizes = self.context.sizes
        return calibrate(self.config, sizes.train, sizes.forget)

    def plan(self) -> PrivacyPlan:
        c = self.calibration
        return PrivacyPlan(
            noisy_steps=0, sigma_t=[], init_sigma=0.0, certified_epsilon=c.certified_epsilon,
            certified_delta=c.certified_delta, epsilon_published=c.target_epsilon,
            certificate_valid=c.certificate_valid, invalid_reasons=c.invalid_reasons(),
            details={"dp_sgd_noise_multiplier": c.noise_multiplier, "train_epsilon": c.train_epsilon,
                     "train_delta": c.train_delta, "achieved_train_epsilon": c.achieved_train_epsilon,
                     "group_size": c.group_size, "dp_sgd_sampling": c.sampling, "group_privacy": c.group_rule,
                     "calibration_seconds": round(c.seconds, 3)})

    def prepare(self, model, log) -> None:
        record = (self.context.pretrained_meta or {}).get("dp_sgd")
        where = self.context.pretrained_meta.get("path", "the pretrained model")
        if not record:
            raise CheckpointError(f"training.pretrained: {where} was not trained with DP-SGD (its checkpoint has no "
                                  "DP-SGD record), so 'dp-sgd' cannot certify it; train it with training.dp_sgd")
        expected = self.calibration
        for key in _MUST_MATCH:
            if record.get(key) != getattr(expected, key):
                raise CheckpointError(
                    f"training.pretrained: {where} was trained with DP-SGD {key} = {record.get(key)!r}, but this "
                    f"run's config needs {getattr(expected, key)!r} (forget set of {expected.group_size}); the "
                    "certificate holds only for the model it was calibrated for")
        log({"train_epsilon": expected.train_epsilon, "train_delta": expected.train_delta,
             "dp_sigma": expected.noise_multiplier})
        self.finished = True

    def certificate_row(self) -> dict:
        c = self.calibration
        return certificate_row(self.plan(), epsilon=c.target_epsilon, delta=c.target_delta)

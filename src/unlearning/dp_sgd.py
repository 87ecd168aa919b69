"""DP-SGD (config name "dp-sgd"): the model was trained with DP-SGD, so unlearning is a
no-op followed by noise-free fine-tuning (the original code). The guarantee is for the whole
forget set as a group (src/privacy/dpsgd_calibration.py: exact by default).

The certificate depends on how the model was trained, so the checkpoint records it, bound
to the weights by a content hash (src/training/checkpoints.py), and a model trained
otherwise (or for another forget-set size) is refused. A model loaded from a path was not
trained by this run nor by the `auto` cache: its certificate rests on its record, and says
so.
"""

from __future__ import annotations

from functools import cached_property

from src.certificates import PrivacyPlan, certificate_row
from src.errors import CheckpointError, ConfigError
from src.privacy.dpsgd_calibration import calibrate_dp_sgd
from src.unlearning.base import UnlearningAlgorithm

# Fields of the training record that the certificate depends on.
_MUST_MATCH = ("noise_multiplier", "group_size", "sampling", "group_rule", "sampling_rate", "accounted_sampling_rate",
               "steps", "l2_norm_clip")


class DPSGDGroupPrivacy(UnlearningAlgorithm):
    name = "dp-sgd"
    noise_after_pretraining = False
    # No noisy phase: on theta [N, d] only the fine-tuning runs, after every member's
    # record is checked (seeds: N).
    vectorised = True

    @classmethod
    def check_config(cls, config) -> None:
        if config.training.dp_sgd is None:
            raise ConfigError("training.dp_sgd: required when unlearning.algorithm is 'dp-sgd' (the certificate comes "
                              "from DP-SGD training: l2_norm_clip, target_epsilon, target_delta, seed)")

    @classmethod
    def certificate_keys(cls, config) -> dict:
        dp = config.training.dp_sgd
        return {"training.dp_sgd.l2_norm_clip": dp.l2_norm_clip, "training.dp_sgd.target_epsilon": dp.target_epsilon,
                "training.dp_sgd.target_delta": dp.target_delta}

    @cached_property
    def calibration(self):
        config, sizes = self.config, self.context.sizes
        dp = config.training.dp_sgd
        return calibrate_dp_sgd(target_epsilon=dp.target_epsilon, target_delta=dp.target_delta,
                                l2_norm_clip=dp.l2_norm_clip, batch_size=config.dataset.batch_size,
                                epochs=config.training.epochs, train_size=sizes.train, forget_size=sizes.forget,
                                group_rule=config.compat.group_privacy, sampling=config.compat.dp_sgd_sampling)

    @property
    def rests_on_record(self) -> str | None:
        """Why the certificate is only as true as the checkpoint's record, if it is."""
        pretrained = self.config.training.pretrained
        if pretrained in (False, "auto"):
            return None
        return (f"the DP-SGD record of the checkpoint '{pretrained}', a model that neither this run nor the "
                "training.pretrained: auto cache trained: the certificate holds only if that record says how the "
                "model was really trained")

    def plan(self) -> PrivacyPlan:
        c = self.calibration
        details = {"dp_sgd_noise_multiplier": c.noise_multiplier, "train_epsilon": c.train_epsilon,
                   "train_delta": c.train_delta, "achieved_train_epsilon": c.achieved_train_epsilon,
                   "group_size": c.group_size, "dp_sgd_sampling": c.sampling, "group_privacy": c.group_rule,
                   "lemma_noise_multiplier": c.lemma_noise_multiplier,
                   "accounted_sampling_rate": c.accounted_sampling_rate,
                   "calibration_seconds": round(c.seconds, 3)}
        if self.rests_on_record:
            details["certificate_rests_on"] = self.rests_on_record
        return PrivacyPlan(
            noisy_steps=0, sigma_t=[], init_sigma=0.0, certified_epsilon=c.certified_epsilon,
            certified_delta=c.certified_delta, epsilon_published=c.target_epsilon,
            certificate_valid=c.certificate_valid, invalid_reasons=c.invalid_reasons(), details=details)

    def prepare(self, model, log) -> None:
        # an ensemble's members each rest on their own model's record
        for i, meta in enumerate(self.context.member_metas or (self.context.pretrained_meta or {},)):
            self._check_record(meta, f" (member {i})" if self.context.member_metas else "")
        expected = self.calibration
        if expected.train_epsilon is not None:
            log({"train_epsilon": expected.train_epsilon, "train_delta": expected.train_delta})
        log({"dp_sigma": expected.noise_multiplier})
        self.finished = True

    def _check_record(self, meta: dict, member: str) -> None:
        """Refuse a model whose DP-SGD record does not carry this run's certificate."""
        record = meta.get("dp_sgd")
        where = meta.get("path", "the pretrained model") + member
        if not record:
            raise CheckpointError(f"training.pretrained: {where} was not trained with DP-SGD (its checkpoint has no "
                                  "DP-SGD record), so 'dp-sgd' cannot certify it; train it with training.dp_sgd")
        if meta.get("provenance") != "this run" and not meta.get("content_sha256"):
            raise CheckpointError(f"training.pretrained: {where} has no content hash binding its DP-SGD record to its "
                                  "weights (an older format or another tool wrote it), so the record cannot be "
                                  "trusted for a certificate; retrain it with this version")
        if self.config.secure_rng and not meta.get("secure_rng"):
            raise CheckpointError(f"training.pretrained: {where} was trained with DP-SGD noise from a seed "
                                  "(research mode); secure_rng: true needs a model trained under secure_rng: true, "
                                  "whose noise no seed replays")
        expected = self.calibration
        for key in _MUST_MATCH:
            if record.get(key) != getattr(expected, key):
                raise CheckpointError(
                    f"training.pretrained: {where} was trained with DP-SGD {key} = {record.get(key)!r}, but this "
                    f"run's config needs {getattr(expected, key)!r} (forget set of {expected.group_size}); the "
                    "certificate holds only for the model it was calibrated for")

    def certificate_row(self) -> dict:
        c = self.calibration
        row = certificate_row(self.plan(), epsilon=c.target_epsilon, delta=c.target_delta)
        if self.rests_on_record:
            row["certificate_rests_on"] = self.rests_on_record
        return row

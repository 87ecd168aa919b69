"""The interface every training algorithm implements: how the model the run unlearns from
is trained on the train split (retain + forget).

    sgd       minibatch training with the configured optimizer (src/training/sgd.py)
    dp_sgd    DP-SGD: clipped per-example gradients plus Gaussian noise
              (src/training/dp_sgd.py; `training.dp_sgd:` given with training.algorithm sgd)
    langevin  full-batch (noisy) gradient descent, the chain Langevin unlearning certifies
              (src/training/langevin.py; training.algorithm: langevin)

The config's `training.method` says which (src/config.py); src/catalogue.py registers them
in src/registry.py, and the trainer looks them up there, naming none of them.
"""

from __future__ import annotations

from typing import ClassVar


class TrainingAlgorithm:
    name: ClassVar[str]

    def __init__(self, config):
        self.config = config

    @classmethod
    def check_config(cls, config, sizes=None) -> None:
        """Refuse what this algorithm cannot run (a ConfigError naming the key), before anything
        is written; `sizes` (the split sizes) when they are known."""

    def fit(self, data, model, log, console, ckpt_dir=None) -> dict:
        """Train `model` on `data.train`; log rows through `log`, epoch lines on `console`;
        checkpoints into `ckpt_dir` when given. Returns the record stored with the model (what
        an unlearning method may need to know about its training: DP-SGD's calibration, the
        Langevin chain's constants)."""
        raise NotImplementedError

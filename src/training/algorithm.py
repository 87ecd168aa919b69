"""The interface every training algorithm implements: how the model the run unlearns from
is trained on the train split (retain + forget).

    sgd       minibatch training with the configured optimizer (src/training/sgd.py)
    dp_sgd    DP-SGD: clipped per-example gradients plus Gaussian noise
              (src/training/dp_sgd.py; `training.dp_sgd:` given with training.algorithm sgd)
    langevin  full-batch (noisy) gradient descent, the chain Langevin unlearning certifies
              (src/training/langevin.py; training.algorithm: langevin)
    pnsgd     projected noisy SGD on cyclic mini-batches, the chain noisy mini-batch SGD
              unlearning certifies (src/training/pnsgd.py; training.algorithm: pnsgd)

The config's `training.method` says which (src/config.py); src/catalogue.py registers them
in src/registry.py, and the trainer looks them up there, naming none of them.
"""

from __future__ import annotations

from typing import ClassVar

from src.errors import ConfigError
from src.registry import TRAINING_ALGORITHMS


class TrainingAlgorithm:
    name: ClassVar[str]
    # The `training.<section>:` only this algorithm reads (None: none), and what it trains by,
    # for the message that refuses the section under another algorithm.
    section: ClassVar[str | None] = None
    trains_by: ClassVar[str] = ""
    # compat switches only this algorithm's chain reads: refused, when set, under another.
    compat_switches: ClassVar[tuple[str, ...]] = ()
    # True where the trained model depends on which examples form the forget set (a chain that
    # orders the data retain-then-forget): the pretrained cache then keys on the forget set too.
    orders_by_forget_set: ClassVar[bool] = False
    # True where `fit` feeds `events` (a LearningEvents, src/evaluation/proxies.py) the
    # logits of every step's forward pass: RUM's learning-event proxies. An algorithm that
    # cannot (a noisy or full-batch chain) leaves it False, and the plan refuses grouping by
    # learning events with it (src/unlearning/rum.py); pretrain() refuses `events` for it.
    records_learning_events: ClassVar[bool] = False

    def __init__(self, config):
        self.config = config

    @classmethod
    def check_config(cls, config, sizes=None) -> None:
        """Refuse what this algorithm cannot run (a ConfigError naming the key), before anything
        is written; `sizes` (the split sizes) when they are known."""

    def fit(self, data, model, log, console, ckpt_dir=None, events=None) -> dict:
        """Train `model` on `data.train`; log rows through `log`, epoch lines on `console`;
        checkpoints into `ckpt_dir` when given; `events` (only where records_learning_events)
        is fed every step's logits. Returns the record stored with the model (what
        an unlearning method may need to know about its training: DP-SGD's calibration, the
        Langevin chain's constants)."""
        raise NotImplementedError


def records_learning_events(config) -> bool:
    """Whether the pretraining of `config` records learning events: its training algorithm
    can, and the run is not in release mode (secure_rng), which keeps no per-example
    measurement of a model before its certificate."""
    return TRAINING_ALGORITHMS.get(config.training.method).records_learning_events and not config.secure_rng


def refuse_foreign_keys(config, own: type[TrainingAlgorithm]) -> None:
    """Refuse a key that belongs to another training algorithm (its `training.<section>:`, a
    compat switch of its chain): under `own` nobody would read it, and a run that silently
    ignores what its config asks for is not the run the config describes."""
    t, compat = config.training, config.compat
    for other in TRAINING_ALGORITHMS.builtins().values():
        if other is own:
            continue
        if other.section is not None and getattr(t, other.section, None) is not None:
            raise ConfigError(f"training.{other.section}: given but training.algorithm is '{t.algorithm}'; set "
                              f"training.algorithm: {other.name} to train by {other.trains_by}, or remove the section")
        for key in other.compat_switches:
            value = getattr(compat, key)
            if value != type(compat).model_fields[key].default:
                raise ConfigError(f"compat.{key}: '{value}' changes the chain of training.algorithm: {other.name}, "
                                  f"but training.algorithm is '{t.algorithm}'; set training.algorithm: {other.name} "
                                  "or remove the switch")

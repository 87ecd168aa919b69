"""An ensemble's members (`seeds: N`, src/config.py's member_config) below the runner: a
member's failure named, and the members' `training.pretrained: auto` models pretrained as
one ensemble (theta [N, d], src/training/ensemble.py), each saved in the auto cache under
its own seed's key, the entry a single run with that seed reads.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import torch

from src.config import ExperimentConfig, member_config, pretrained_key
from src.errors import DivergedError
from src.interrupts import deferred_interrupts
from src.models.buffers import running_stats_layers
from src.models.model import ModelFactory
from src.registry import UNLEARNING_ALGORITHMS
from src.tracking import RunLogger, Stopwatch
from src.training.checkpoints import PretrainedCache, save_checkpoint
from src.training.ensemble import default_chunk, pretrain_ensemble
from src.training.evaluate import Evaluator
from src.training.finite import require_finite
from src.training.trainer import Console, build_model


@contextmanager
def member_failure(config: ExperimentConfig, i: int):
    """A diverged member fails the run, named."""
    try:
        yield
    except DivergedError as e:
        raise DivergedError(f"member {i} of {config.seeds} (global_seed {member_config(config, i).global_seed}): "
                            f"{e}") from None


def pretrains_together(config: ExperimentConfig, input_shape) -> bool:
    """Whether the members' `auto` pretraining runs as one ensemble (pretrain_ensemble:
    plain SGD training, research mode). Not for a network with running statistics (its
    members would share one module's buffers), nor when the run reads the learning events
    that single pretraining records beside the cached model (RUM grouping by them): the
    ensemble records none."""
    t = config.training
    if not (config.seeds > 1 and t.pretrained == "auto" and t.method == "sgd" and t.sam is None
            and not config.secure_rng):
        return False
    if UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm).reads_learning_events(config):
        return False
    return not has_running_stats(config, input_shape)


def has_running_stats(config: ExperimentConfig, input_shape) -> bool:
    """Whether the network keeps BatchNorm-style running statistics (no ensemble runs it)."""
    module = ModelFactory.create_model(config.model.name, config.model.n_classes, tuple(input_shape))
    return bool(running_stats_layers(module))


def pretrain_missing_members(config: ExperimentConfig, data, device, console: Console) -> None:
    """Fill the auto cache for the members whose seed has no entry yet, as one ensemble of
    theta [N, d] (src/training/ensemble.py), each under its own key: the entry a single run
    with that seed reads. The models agree with single pretraining to float rounding (the
    record says `trained_as`). A member that diverges fails the run and nothing is cached."""
    if not pretrains_together(config, data.input_shape):
        return
    cache = PretrainedCache(config.checkpoints_dir)
    singles = [member_config(config, i) for i in range(config.seeds)]
    missing = [(i, s) for i, s in enumerate(singles) if not cache.has(pretrained_key(s))]
    if len(missing) < 2:
        return
    watch = Stopwatch()
    console.line(f"pretraining {len(missing)} members as one ensemble (training.pretrained: auto, not cached yet)")
    history = []
    ensemble = pretrain_ensemble(config, data, [s.global_seed for _, s in missing], device,
                                 default_chunk(device, config.dataset.batch_size), history)
    models = []
    for row, (i, single) in enumerate(missing):
        model = build_model(single, data.input_shape, device)
        with torch.no_grad():
            model.theta.copy_(ensemble.theta.detach()[row])
        with member_failure(config, i):
            val_loss, val_acc = Evaluator(model)(data.val)
            require_finite(f"in pretraining (member {i})", f"lower training.max_lr (now {config.training.max_lr})",
                           model.theta, val_loss=val_loss)
        models.append((single, model, val_acc, [{k: (v[row].item() if isinstance(v, np.ndarray) else v)
                                                  for k, v in h.items()} for h in history]))
    for single, model, val_acc, rows in models:
        save_pretrained_entry(single, model, val_acc, rows, watch.seconds() / len(missing))


def save_pretrained_entry(config: ExperimentConfig, model, val_acc: float, rows: list, seconds: float) -> None:
    """One member's model as the auto cache entry of its seed (as ensure_pretrained writes it)."""
    key = pretrained_key(config)
    cache = PretrainedCache(config.checkpoints_dir)
    with cache.lock(key):
        if cache.has(key):  # another process trained it meanwhile
            return
        entry = cache.entry(key)
        logger = None
        try:
            entry.mkdir(parents=True, exist_ok=True)
            recipe = {k: v for k, v in config.to_dict().items()
                      if k in ("dataset", "model", "training", "global_seed", "compat")}
            logger = RunLogger(entry, recipe, key)
            for row in rows:
                logger.log(row)
            logger.finish({"val_accuracy": val_acc, "seconds": seconds})
            logger = None
            meta = {"epochs": config.training.epochs, "dp_sgd": None, "secure_rng": config.secure_rng,
                    "pretrained_key": key, "val_accuracy": val_acc,
                    "trained_as": "a member of an ensemble (theta [N, d]): the single pretraining to float rounding"}
            save_checkpoint(cache.model_path(key), model.state_dict(), meta)
        except BaseException:
            with deferred_interrupts():
                if logger is not None:
                    logger.close()
                if not cache.has(key):
                    shutil.rmtree(entry, ignore_errors=True)
            raise

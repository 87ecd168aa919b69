"""An ensemble's members (`seeds: N`, src/config.py's member_config) below the runner: a
member's failure named, the members' `training.pretrained: auto` models pretrained as
one ensemble (theta [N, d], src/training/ensemble.py; by DP-SGD src/training/dp_sgd_ensemble.py),
each saved in the auto cache under its own seed's key, the entry a single run with that
seed reads, and the members' DP-SGD training in the run (`pretrained: false`) as one ensemble.
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
from src.training.checkpoints import PretrainedCache, checkpoint_name, save_checkpoint
from src.training.dp_sgd_ensemble import DPSGDEnsemble
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
    if not (config.seeds > 1 and t.pretrained == "auto" and t.method in ("sgd", "dp_sgd") and t.sam is None
            and not config.secure_rng):
        return False
    if UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm).reads_learning_events(config):
        return False
    return not has_running_stats(config, input_shape)


def dp_sgd_trains_together(config: ExperimentConfig, input_shape) -> bool:
    """Whether the members train by DP-SGD in the run (`pretrained: false`) as one ensemble
    (DPSGDEnsemble). Not in release mode (secure_rng: noise and memberships from OS entropy,
    which no member's seed replays, and nothing of the training may be measured), nor for
    a network with running statistics: those members train one after another."""
    t = config.training
    return (config.seeds > 1 and t.pretrained is False and t.method == "dp_sgd" and not config.secure_rng
            and not has_running_stats(config, input_shape))


def fit_path(config: ExperimentConfig, input_shape) -> str:
    """How the members' models come to be (the dry run's `ensemble.fit`)."""
    pretrained = config.training.pretrained
    dp_sgd = config.training.method == "dp_sgd"
    vectorised = ("vectorised DP-SGD training (theta [N, d]; src/training/dp_sgd_ensemble.py: per-example gradients "
                  "in one vmap over members and examples, each member's own batches, clipping and noise; Poisson "
                  "batches padded to the largest of a chunk with weight 0)" if dp_sgd else
                  "vectorised pretraining (theta [N, d])")
    if pretrains_together(config, input_shape):
        return (f"{vectorised} of the members missing from the auto cache, each saved under its own seed's key; "
                "then each member's model loaded in turn")
    if dp_sgd_trains_together(config, input_shape):
        return f"{vectorised} in the run, each member's checkpoints under member-<i>/ckpt"
    why = (" (release mode, secure_rng: DP-SGD's noise and batches come from OS entropy, which no member's seed "
           "replays)" if dp_sgd and config.secure_rng else
           f" (model.name '{config.model.name}' keeps BatchNorm running statistics)"
           if config.seeds > 1 and has_running_stats(config, input_shape) else "")
    if pretrained == "auto":
        return (f"sequential in-process{why}: each member's model from the auto cache of its own seed "
                "(trained now if missing)")
    if pretrained is False:
        return f"sequential in-process{why}: each member pretrained in the run"
    return "the same checkpoint for every member"


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
    if config.training.method == "dp_sgd":
        return _dp_sgd_missing_members(config, data, device, missing, watch)
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


def _dp_sgd_missing_members(config: ExperimentConfig, data, device, missing: list, watch) -> None:
    """The missing members trained by DP-SGD as one ensemble, then each saved with its
    calibration record, as ensure_pretrained saves a single DP-SGD training."""
    ensemble = DPSGDEnsemble([s for _, s in missing], data, device)
    check = _epoch_check(config, [i for i, _ in missing], ensemble)
    ensemble.fit(check)
    models = []
    for row, (i, single) in enumerate(missing):
        model = build_model(single, data.input_shape, device)
        with torch.no_grad():
            model.theta.copy_(ensemble.model.theta.detach()[row])
        with member_failure(config, i):
            val_loss, val_acc = Evaluator(model)(data.val)
            require_finite(f"in pretraining (member {i})", f"lower training.max_lr (now {config.training.max_lr})",
                           model.theta, val_loss=val_loss)
        models.append((single, model, val_acc, ensemble.rows[row]))
    for single, model, val_acc, rows in models:
        save_pretrained_entry(single, model, val_acc, rows, watch.seconds() / len(missing), ensemble.record())


def _epoch_check(config: ExperimentConfig, members: list[int], ensemble: DPSGDEnsemble):
    """After each epoch, what the single run checks (src/training/sgd.py), member by
    member: a diverged one fails the run, named."""
    advice = f"lower training.max_lr (now {config.training.max_lr})"

    def check(epoch, train_loss, val_loss):
        thetas = ensemble.model.theta.detach()
        for row, i in enumerate(members):
            with member_failure(config, i):
                require_finite(f"in pretraining epoch {epoch}", advice, thetas[row], train_loss=train_loss[row],
                               val_loss=float(val_loss[row]))

    return check


def fit_members_together(config: ExperimentConfig, data, device, console: Console, run_dir) -> list:
    """Every member trained by DP-SGD in the run (`pretrained: false`) as one ensemble
    (DPSGDEnsemble): per member (model, record, timings, rows), what fit_model would have
    trained, logged and returned; the checkpoints its single run saves (epoch 0, every
    `save_every` epochs and the last) go to run_dir/member-<i>/ckpt as training goes."""
    singles = [member_config(config, i) for i in range(config.seeds)]
    watch = Stopwatch()
    console.line(f"training {config.seeds} members by DP-SGD as one ensemble (theta [N, d])")
    ensemble = DPSGDEnsemble(singles, data, device)
    models = [build_model(single, data.input_shape, device) for single in singles]
    meta = {"epochs": config.training.epochs, "dp_sgd": ensemble.record(), "secure_rng": config.secure_rng}
    check = _epoch_check(config, list(range(config.seeds)), ensemble)

    def save(epoch):
        for i, model in enumerate(models):
            with torch.no_grad():
                model.theta.copy_(ensemble.model.theta.detach()[i])
            save_checkpoint(run_dir / f"member-{i}" / "ckpt" / checkpoint_name(epoch), model.state_dict(),
                            {**meta, "epoch": epoch})

    def on_epoch(epoch, train_loss, val_loss):
        check(epoch, train_loss, val_loss)
        if epoch % config.save_every == 0 or epoch == config.training.epochs:
            save(epoch)

    save(0)
    ensemble.fit(on_epoch)
    seconds = watch.seconds() / config.seeds
    for i, model in enumerate(models):
        with torch.no_grad():
            model.theta.copy_(ensemble.model.theta.detach()[i])
    return [(model, {**meta, "provenance": "this run"}, {"fit_seconds": seconds}, ensemble.rows[i])
            for i, model in enumerate(models)]


def save_pretrained_entry(config: ExperimentConfig, model, val_acc: float, rows: list, seconds: float,
                          record: dict | None = None) -> None:
    """One member's model as the auto cache entry of its seed (as ensure_pretrained writes
    it); `record`: its DP-SGD calibration, when it trained by DP-SGD."""
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
            meta = {"epochs": config.training.epochs, "dp_sgd": record, "secure_rng": config.secure_rng,
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

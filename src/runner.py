"""One experiment from a validated config: the plan, the pretrained model, the run.

`make_plan` checks everything that can be checked without data (the algorithm's rules,
the budget, the certificate) and is what `experiment.py --dry-run` prints. `run` executes
the plan in a staging directory that becomes logs/<run_id> only once it has finished.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from src.config import ExperimentConfig, pretrained_key, run_id
from src.data.base_datamodule import SplitSizes
from src.data.batches import make_generator, num_batches
from src.data.datamodule import check_dataset_config, get_datamodule, split_sizes
from src.errors import UserError
from src.models.model import ModelFactory, count_parameters
from src.seeds import derive_seed
from src.tracking import RunDirectory, RunLogger, Stopwatch
from src.training.checkpoints import PretrainedCache, load_checkpoint, resolve_pretrained_path, save_checkpoint
from src.training.trainer import Console, Evaluator, Trainer, build_model, pretrain
from src.unlearning.base import AlgorithmContext, NoiseSource, algorithm_class


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device: '{name}' was asked for but no CUDA device is available; use device: cpu or auto")
    return torch.device(name)


@dataclass
class Plan:
    config: ExperimentConfig
    run_id: str
    input_shape: tuple[int, ...]
    sizes: SplitSizes
    data_present: bool
    steps_per_epoch: int
    num_parameters: int
    algorithm: object
    privacy: object

    @property
    def run_dir(self) -> Path:
        return Path(self.config.logs_dir) / self.run_id

    def pretrained_description(self) -> dict:
        pretrained = self.config.training.pretrained
        if pretrained == "auto":
            key = pretrained_key(self.config)
            cache = PretrainedCache(self.config.checkpoints_dir)
            return {"pretrained": "auto", "pretrained_key": key, "pretrained_path": str(cache.model_path(key)),
                    "pretrained_cached": cache.has(key)}
        if pretrained is False:
            return {"pretrained": False}
        return {"pretrained": pretrained, "pretrained_exists": Path(pretrained).exists()}

    def as_dict(self) -> dict:
        c = self.config
        out = {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "dataset": c.dataset.name,
            "data_present": self.data_present,
            "model": c.model.name,
            "num_parameters": self.num_parameters,
            "algorithm": c.unlearning.algorithm,
            **self.pretrained_description(),
            "split_sizes": {k: getattr(self.sizes, k) for k in ("val", "train", "forget", "retain", "test")},
            "steps_per_epoch": self.steps_per_epoch,
            "budget_steps": c.unlearning.epochs * self.steps_per_epoch,
        }
        out.update(self.privacy.as_dict())
        return out


def make_plan(config: ExperimentConfig, sizes: SplitSizes | None = None) -> Plan:
    """Everything that can be decided and refused before data are loaded."""
    shape = check_dataset_config(config)
    cls = algorithm_class(config.unlearning.algorithm)
    cls.check_config(config)
    present = True
    if sizes is None:
        sizes, present = split_sizes(config)
    steps = num_batches(sizes.retain, config.dataset.batch_size)
    model = ModelFactory.create_model(config.model.name, config.model.n_classes, shape)
    context = AlgorithmContext(config=config, num_parameters=count_parameters(model), input_shape=shape,
                               sizes=sizes, steps_per_epoch=steps)
    algorithm = cls(context)
    privacy = algorithm.plan()
    algorithm.check_plan(privacy)
    return Plan(config, run_id(config), shape, sizes, present, steps, context.num_parameters, algorithm, privacy)


# ---------------------------------------------------------------------------------------
# Pretrained models


def ensure_pretrained(config: ExperimentConfig, device, console: Console, data=None,
                      without_forget: bool = False) -> Path:
    """The cached model for `training.pretrained: auto`, trained now if nobody has yet.

    `without_forget`: the same recipe on the retain set alone (the audit's world B)."""
    key = pretrained_key(config, without_forget)
    cache = PretrainedCache(config.checkpoints_dir)
    with cache.lock(key):
        if cache.has(key):
            return cache.model_path(key)
        console.line(f"pretraining {key} (training.pretrained: auto, not cached yet)")
        entry = cache.entry(key)
        entry.mkdir(parents=True, exist_ok=True)
        data = data if data is not None else get_datamodule(config, device)
        if without_forget:
            data = dataclasses.replace(data, train=data.retain)
        model = build_model(config, data.input_shape, device)
        recipe = {k: v for k, v in config.to_dict().items() if k in ("dataset", "model", "training", "global_seed", "compat")}
        logger = RunLogger(entry, recipe, key)
        watch = Stopwatch()
        try:
            meta = pretrain(config, data, model, logger.log, console)
            val_loss, val_acc = Evaluator(model)(data.val)
            meta.update({"pretrained_key": key, "val_accuracy": val_acc})
            save_checkpoint(cache.model_path(key), model.state_dict(), meta)
            logger.finish({"val_accuracy": val_acc, "seconds": watch.seconds()})
        finally:
            logger.close()
        return cache.model_path(key)


def load_pretrained(config: ExperimentConfig, model, device, console: Console, data) -> dict:
    pretrained = config.training.pretrained
    path = ensure_pretrained(config, device, console, data) if pretrained == "auto" else \
        resolve_pretrained_path(pretrained, config.training.epochs)
    state, meta = load_checkpoint(path)
    model.load_state_dict(state, source=str(path))
    return {**meta, "path": str(path)}


# ---------------------------------------------------------------------------------------
# A run


def attach_run(plan: Plan, device, pretrained_meta: dict | None = None):
    """Give the planned algorithm what only a run has: the device, its noise, the model's record."""
    config = plan.config
    context = plan.algorithm.context
    context.device = device
    context.pretrained_meta = pretrained_meta or {}
    context.noise_generator = make_generator(derive_seed(config.global_seed, "unlearning-noise"), device)
    context.noise = NoiseSource(context.noise_generator, plan.num_parameters, device, reuse=config.compat.reuse_noise)
    return plan.algorithm


def run(config: ExperimentConfig, config_file: str | None, device, console: Console) -> dict:
    plan = make_plan(config)
    directory = RunDirectory(config.logs_dir, plan.run_id)
    run_dir = directory.create()
    logger = None
    watch = Stopwatch()
    try:
        logger = RunLogger(run_dir, config.to_dict(), plan.run_id, config.wandb)
        data = get_datamodule(config, device)
        if data.sizes != plan.sizes:  # files of another size than the official release
            plan = make_plan(config, data.sizes)
        model = build_model(config, data.input_shape, device)
        timings = {}
        if config.training.pretrained is False:
            meta = pretrain(config, data, model, logger.log, console, ckpt_dir=run_dir / "ckpt")
        else:
            meta = load_pretrained(config, model, device, console, data)
            val_loss, val_acc = Evaluator(model)(data.val)
            logger.log({"Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc})
            console.line(f"loaded pretrained model {meta['path']}: val accuracy {val_acc:.4f}")
        timings["fit_seconds"] = watch.seconds()

        algorithm = attach_run(plan, device, meta)
        trainer = Trainer(config, data, model, algorithm, logger, console)
        start = time.perf_counter()
        trainer.unlearn()
        timings["unlearn_seconds"] = time.perf_counter() - start
        trainer.test()
        extra = {"config_file": config_file, "certificate": trainer.certificate, "noisy_steps": trainer.noisy_steps,
                 "plan": plan.as_dict(), "timings": {**timings, "total_seconds": watch.seconds()}}
        summary = logger.finish(extra)
        logger = None
        final = directory.commit()
        console.line(f"results: {final}")
        return summary
    except BaseException:
        if logger is not None:
            logger.close()
        directory.abandon()
        raise


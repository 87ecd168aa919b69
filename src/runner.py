"""One experiment from a validated config: the plan, the pretrained model, the run.

`make_plan` checks everything that can be checked without data (the algorithm's rules,
the budget, the certificate) and is what `experiment.py --dry-run` prints. `run` executes
the plan in a staging directory that becomes logs/<run_id> only once it has finished.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src import catalogue  # noqa: F401  (fills the registries before any config is read)
from src.certificates import FLOAT32_MAX, certificate_numbers, certificate_scope, require_finite_certificate
from src.config import ExperimentConfig, member_config, member_overrides, pretrained_key, run_id
from src.data.base_datamodule import SplitSizes
from src.data.batches import num_batches
from src.data.datamodule import check_dataset_config, check_split_sizes, get_datamodule, split_sizes
from src.entropy import randomness
from src.errors import ConfigError, UserError
from src.evaluation.members import member_statistics
from src.evaluation.pipeline import check_sizes as check_metric_sizes
from src.evaluation.pipeline import evaluate_run
from src.evaluation.proxies import LearningEvents, save_learning_events
from src.interrupts import deferred_interrupts
from src.models.buffers import check_buffers
from src.models.model import ModelFactory, count_parameters
from src.noise import NoiseSource
from src.preflight import check_before_writing
from src.registry import TRAINING_ALGORITHMS, UNLEARNING_ALGORITHMS
from src.request_stream.plan import plan_stream
from src.request_stream.rum import run_rum
from src.request_stream.run import run_requests
from src.seeds import derive_seed
from src.tracking import RunDirectory, RunLogger, Stopwatch, TaggedLogger, fmt, to_builtin
from src.training.algorithm import records_learning_events
from src.training.checkpoints import (PretrainedCache, load_checkpoint, require_finite_weights,
                                      resolve_pretrained_path, save_checkpoint)
from src.training.ensemble import EnsembleModel, EnsembleTrainer, attach_ensemble, default_chunk
from src.training.evaluate import Evaluator
from src.training.members import (dp_sgd_trains_together, fit_members_together, fit_path, has_running_stats,
                                  member_failure, pretrain_missing_members, pretrains_together)
from src.training.finite import require_finite
from src.training.trainer import Console, Trainer, build_model, pretrain
from src.unlearning.base import AlgorithmContext

# What runs a plan of several passes, by the key its plan is recorded under: a stream of
# deletion requests (src/request_stream/run.py) or RUM's steps (src/request_stream/rum.py).
RUN_PASSES = {"requests": run_requests, "rum": run_rum}


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
    # A stream of deletion requests (config `requests:`): every request's own plan.
    stream: object = None

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
        if self.stream is not None:
            out[getattr(self.stream, "key", "requests")] = self.stream.as_dict()
        out.update(certificate_scope(c))
        if c.seeds > 1:
            out["ensemble"] = member_paths(self)
        return out


def make_plan(config: ExperimentConfig, sizes: SplitSizes | None = None, forget_labels=None) -> Plan:
    """Everything that can be decided and refused before data are loaded; for a stream of
    requests also every request's plan (per-class requests need the forget split's labels:
    given, or read from the data)."""
    present = True
    if sizes is None:
        sizes, present = split_sizes(config)
    plan = _plan_pass(config, sizes, present)
    if config.requests is not None:
        if config.requests.per_class and forget_labels is None:
            forget_labels = get_datamodule(config, "cpu").forget.y
        plan.stream = plan_stream(config, sizes, lambda c, s: _plan_pass(c, s, present), forget_labels)
    elif hasattr(plan.algorithm, "plan_steps"):  # a meta-algorithm (RUM): one pass per step, planned
        plan.stream = plan.algorithm.plan_steps()
    return plan


def _plan_pass(config: ExperimentConfig, sizes: SplitSizes, present: bool) -> Plan:
    """One pass through the phases: a single run, or one request of a stream."""
    shape = check_dataset_config(config)
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    if config.unlearning.sam is not None and not cls.accepts_sam:
        raise ConfigError(f"unlearning.sam is not allowed for '{cls.name}': a certified phase assumes one plain "
                          "gradient per step (and Sharp MinMax / influence have their own keys); remove it")
    cls.check_config(config)
    TRAINING_ALGORITHMS.get(config.training.method).check_config(config, sizes)
    check_split_sizes(config, sizes)
    check_metric_sizes(config, sizes)
    steps = num_batches(sizes.retain, config.dataset.batch_size)
    model = ModelFactory.create_model(config.model.name, config.model.n_classes, shape)
    check_model_runs(model, config, shape)
    context = AlgorithmContext(config=config, num_parameters=count_parameters(model), input_shape=shape,
                               sizes=sizes, steps_per_epoch=steps,
                               plan_pass=lambda c, s: _plan_pass(c, s, present))
    algorithm = cls(context)
    keys = cls.certificate_keys(config)
    with certificate_numbers(keys):
        privacy = algorithm.plan()
        algorithm.check_plan(privacy)
    require_finite_certificate(privacy, keys)
    check_buffers(model, config, shape, certified=privacy.certified_epsilon is not None)
    _check_dp_sgd_noise_fits_float32(config)
    return Plan(config, run_id(config), shape, sizes, present, steps, context.num_parameters, algorithm, privacy)


def check_model_runs(model, config: ExperimentConfig, shape: tuple[int, ...]) -> None:
    """One forward pass on a zero example, so that a model that cannot take the dataset's
    inputs is refused now, not after the run directory exists."""
    x = torch.zeros((1, shape[-1], *shape[:-1]) if len(shape) == 3 else (1, *shape))
    try:
        with torch.no_grad():
            out = model.eval()(x)  # evaluation behaviour: BatchNorm takes a single example
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise ConfigError(f"model.name: '{config.model.name}' cannot take inputs of dataset.input_shape "
                          f"{list(shape)}: {str(e).splitlines()[0][:200]}") from None
    if tuple(out.shape) != (1, config.model.n_classes):
        raise ConfigError(f"model.name: '{config.model.name}' gives outputs of shape {list(out.shape[1:])} "
                          f"for inputs {list(shape)}, not model.n_classes = {config.model.n_classes}")


def _check_dp_sgd_noise_fits_float32(config: ExperimentConfig) -> None:
    """DP-SGD draws N(0, (clip * multiplier)^2) in float32, the multiplier up to 1e5 (the
    calibration's search range): a clip beyond float32 / 1e5 could not be drawn."""
    dp = config.training.dp_sgd
    if dp is not None and dp.l2_norm_clip * 1e5 > FLOAT32_MAX:
        raise ConfigError(f"training.dp_sgd.l2_norm_clip: {dp.l2_norm_clip!r} times a noise multiplier of up to 1e5 "
                          f"exceeds float32 ({FLOAT32_MAX:.4g}), in which DP-SGD's noise is drawn; use a clip below "
                          f"{FLOAT32_MAX / 1e5:.3g}")


# ---------------------------------------------------------------------------------------
# Pretrained models


def ensure_pretrained(config: ExperimentConfig, device, console: Console, data=None,
                      without_forget: bool = False) -> Path:
    """The cached model for `training.pretrained: auto`, trained now if nobody has yet.
    In release mode (secure_rng) its training is not printed (the cache keeps its log).

    `without_forget`: the same recipe on the retain set alone (the audit's world B)."""
    if config.secure_rng:
        console = Console(quiet=True)
    key = pretrained_key(config, without_forget)
    cache = PretrainedCache(config.checkpoints_dir)
    with cache.lock(key):
        if cache.has(key):
            return cache.model_path(key)
        console.line(f"pretraining {key} (training.pretrained: auto, not cached yet)")
        entry = cache.entry(key)
        logger = None
        watch = Stopwatch()
        try:
            entry.mkdir(parents=True, exist_ok=True)
            data = data if data is not None else get_datamodule(config, device)
            if without_forget:
                data = dataclasses.replace(data, train=data.retain)
            model = build_model(config, data.input_shape, device)
            recipe = {k: v for k, v in config.to_dict().items()
                      if k in ("dataset", "model", "training", "global_seed", "compat")}
            logger = RunLogger(entry, recipe, key)
            # RUM's learning-event proxies, recorded as the model trains (src/evaluation/proxies.py)
            events = (LearningEvents(len(data.train), device)
                      if records_learning_events(config) and not without_forget else None)
            meta = pretrain(config, data, model, logger.log, console, events=events)  # DivergedError: nothing cached
            val_loss, val_acc = Evaluator(model)(data.val)
            meta.update({"pretrained_key": key, "val_accuracy": val_acc})
            logger.finish({"val_accuracy": val_acc, "seconds": watch.seconds()})
            logger = None
            if events is not None:
                save_learning_events(entry, events, data.indices.train)
            # model.pt is what makes the entry cached: written last, atomically.
            save_checkpoint(cache.model_path(key), model.state_dict(), meta)
        except BaseException:
            with deferred_interrupts():
                if logger is not None:
                    logger.close()
                if not cache.has(key):  # a failed pretraining leaves no half entry behind
                    shutil.rmtree(entry, ignore_errors=True)
            raise
        return cache.model_path(key)


def load_pretrained(config: ExperimentConfig, model, device, console: Console, data) -> dict:
    pretrained = config.training.pretrained
    path = ensure_pretrained(config, device, console, data) if pretrained == "auto" else \
        resolve_pretrained_path(pretrained, config.training.epochs)
    state, meta = load_checkpoint(path)
    remedy = f"delete {Path(path).parent} to train it again" if pretrained == "auto" else "retrain it"
    require_finite_weights(state, path, remedy)
    model.load_state_dict(state, source=str(path))
    # Where the model and its record come from: the auto cache (trained by this code for
    # this recipe), or a path (trained by anyone: a certificate resting on it says so).
    return {**meta, "path": str(path), "provenance": "auto" if pretrained == "auto" else "path"}


# ---------------------------------------------------------------------------------------
# A run


def attach_run(plan: Plan, device, pretrained_meta: dict | None = None, seed_tag: str = "", data=None):
    """Give the planned algorithm what only a run has: the device, its noise, the model's
    record, the data (full-batch methods read the splits themselves). `seed_tag` names the
    noise stream of one pass among several (a request)."""
    config = plan.config
    context = plan.algorithm.context
    context.device = device
    context.pretrained_meta = pretrained_meta or {}
    context.data = data
    source = randomness(config.secure_rng, derive_seed(config.global_seed, "unlearning-noise" + seed_tag), device)
    context.noise = NoiseSource(source, plan.num_parameters, device, reuse=config.compat.reuse_noise)
    return plan.algorithm


def run_outcome(certificate: dict, noisy_steps: int) -> dict:
    """The top of summary.json: what was certified for the released model, and what the
    certificate covers (releasable, its scope, the record it rests on)."""
    keys = ("certified_epsilon", "certified_delta", "certificate_valid", "epsilon_published")
    covers = {key: certificate[key] for key in ("releasable", "certificate_scope", "certificate_rests_on")
              if key in certificate}
    return {**{key: certificate[key] for key in keys}, **covers, "noisy_steps": noisy_steps}


def run(config: ExperimentConfig, config_file: str | None, device, console: Console) -> dict:
    """One run directory: the single run (`seeds: 1`), or an ensemble (run_members)."""
    if config.seeds > 1:
        return run_members(config, config_file, device, console)

    def single(plan, data, logger, run_dir):
        extra = run_pass(plan, data, device, console, logger, run_dir)
        return {**extra, "config_file": config_file, "plan": plan.as_dict()}, ""

    return staged_run(config, device, console, single)


def staged_run(config: ExperimentConfig, device, console: Console, body) -> dict:
    """Plan, check, then build the run in a staging directory: `body(plan, data, logger,
    run_dir)` returns what the summary states and a note for the results line. The directory
    is moved into place only when the summary is written; on any failure it is dropped, so
    nothing of a failed run is ever recorded as finished."""
    plan = make_plan(config)
    check_before_writing(config, plan)
    directory = RunDirectory(config.logs_dir, plan.run_id)
    logger = None
    watch = Stopwatch()
    try:
        run_dir = directory.create()
        logger = RunLogger(run_dir, config.to_dict(), plan.run_id, config.wandb)
        data = get_datamodule(config, device)
        if data.sizes != plan.sizes:  # files of another size than the official release
            plan = make_plan(config, data.sizes, data.forget.y)
        extra, note = body(plan, data, logger, run_dir)
        extra.setdefault("timings", {})["total_seconds"] = watch.seconds()
        summary = logger.finish(extra)
        logger = None
        final = directory.commit()
        console.line(f"results: {final}{note}")
        return summary
    except BaseException:
        with deferred_interrupts():  # a second signal must not leave the staging directory behind
            if logger is not None:
                logger.close()
            directory.abandon()
        raise


def fit_model(config: ExperimentConfig, data, device, console: Console, logger, out_dir: Path, fitted=None):
    """The model unlearning starts from: pretrained in the run (`pretrained: false`), or loaded
    (the `auto` cache, one entry per recipe and seed, or a path). Returns (model, its
    record, timings). `fitted`: a member's (model, record, timings, rows) already trained in
    the run with the other members (src/training/members.py); its rows are logged here, where
    its single run logs them."""
    if fitted is not None:
        model, meta, timings, rows = fitted
        for row in rows:
            logger.log(row)
        return model, meta, timings
    watch = Stopwatch()
    model = build_model(config, data.input_shape, device)
    # Release mode: the model before unlearning is measured nowhere in this run's output
    # (no metrics, no lines, no checkpoints in its directory).
    release = config.secure_rng
    fit_console = Console(quiet=True) if release else console
    if config.training.pretrained is False:
        meta = pretrain(config, data, model, (lambda row: None) if release else logger.log, fit_console,
                        ckpt_dir=None if release else out_dir / "ckpt")
        meta["provenance"] = "this run"
    else:
        meta = load_pretrained(config, model, device, fit_console, data)
        if not release:
            val_loss, val_acc = Evaluator(model)(data.val)
            logger.log({"Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc})
            console.line(f"loaded pretrained model {meta['path']}: val accuracy {val_acc:.4f}")
    return model, meta, {"fit_seconds": watch.seconds()}


def run_pass(plan: Plan, data, device, console: Console, logger, out_dir: Path, fitted=None) -> dict:
    """Fit (pretrain or load; `fitted`: see fit_model), unlearn, test and evaluate the single
    run of `plan.config`; its rows go to `logger` (a member's rows carry its index), its files
    (checkpoints of a model trained in the run, a stream's deployed models) under `out_dir`;
    returns what the run's summary states about it."""
    config = plan.config
    model, meta, timings = fit_model(config, data, device, console, logger, out_dir, fitted)

    if plan.stream is not None:  # deletion requests over time, or RUM's steps: one pass each
        run_passes = RUN_PASSES[getattr(plan.stream, "key", "requests")]
        extra = run_passes(plan.stream, data, model, logger, console, device, meta, out_dir, attach_run)
    else:
        algorithm = attach_run(plan, device, meta, data=data)
        trainer = Trainer(config, data, model, algorithm, logger, console)
        start = time.perf_counter()
        trainer.unlearn()
        extra = {"certificate": trainer.certificate, "noisy_steps": trainer.noisy_steps,
                 "timings": {"unlearn_seconds": time.perf_counter() - start}, **trainer.test(),
                 "compute": {"gradient_evaluations": trainer.gradient_evaluations, "train_size": len(data.train)}}
    start = time.perf_counter()
    extra["evaluation"] = evaluate_run(config, data, model, logger.log, console)
    extra["timings"]["evaluation_seconds"] = time.perf_counter() - start
    extra.update(run_outcome(extra["certificate"], extra["noisy_steps"]))
    extra["timings"] = {**timings, **extra["timings"]}
    return extra


# ---------------------------------------------------------------------------------------
# An ensemble: `seeds: N` members in one process and one run directory


def sequential_because(config: ExperimentConfig, input_shape) -> str | None:
    """Why the members' unlearning cannot run as one vectorised ensemble (None: it can)."""
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    reasons = [
        (not cls.vectorised, f"unlearning.algorithm '{cls.name}' is not vectorised over members yet"),
        (config.requests is not None, "a stream of requests (requests:)"),
        (config.secure_rng, "release mode (secure_rng)"),
        (config.unlearning.fine_grained_validation, "unlearning.fine_grained_validation"),
        (config.post_unlearning.sam is not None, "post_unlearning.sam"),
        (cls.vectorised and has_running_stats(config, input_shape),
         f"model.name '{config.model.name}' keeps BatchNorm running statistics"),
    ]
    return next((why for bad, why in reasons if bad), None)


def member_paths(plan: Plan) -> dict:
    """Which path each phase of an ensemble takes (the dry run prints it)."""
    config = plan.config
    fit = fit_path(config, plan.input_shape)
    why = sequential_because(config, plan.input_shape)
    unlearn = ("vectorised: theta [N, d] (src/training/ensemble.py), agreeing with single runs to float rounding"
               if why is None else f"sequential in-process ({why})")
    return {"members": config.seeds, "fit": fit, "unlearn": unlearn}


def ensemble_outcome(members: list[dict]) -> dict:
    """The top of an ensemble's summary.json: the weakest member's certificate (the largest
    epsilon and delta; valid only if every member's is), so that nothing printed for the
    ensemble promises more than one of its released models has. Each member's own is in
    `members`."""
    def worst(key):
        values = [m[key] for m in members]
        return None if any(v is None for v in values) else max(values)
    out = {"certified_epsilon": worst("certified_epsilon"), "certified_delta": worst("certified_delta"),
           "certificate_valid": all(m["certificate_valid"] for m in members),
           "epsilon_published": worst("epsilon_published"),
           "noisy_steps": max(m["noisy_steps"] for m in members)}
    if all("releasable" in m for m in members):
        out["releasable"] = all(m["releasable"] for m in members)
    return out


def run_members(config: ExperimentConfig, config_file: str | None, device, console: Console) -> dict:
    """Member i is the single run of member_config(config, i), run in this process one after
    another, sharing start-up and data; rows carry `member`, summary.json holds every
    member's results (`members`) and their statistics (`member_stats`). A member that fails
    (diverges) fails the run: nothing of it is recorded as finished."""

    def members_of(plan, data, logger, run_dir):
        pretrain_missing_members(config, data, device, console)
        fitted = (fit_members_together(config, data, device, console, run_dir)
                  if dp_sgd_trains_together(config, data.input_shape) else [None] * config.seeds)
        if sequential_because(config, data.input_shape) is None:
            members = vectorised_members(config, data, device, console, logger, run_dir, fitted)
        else:
            members = []
            for i in range(config.seeds):
                single = member_config(config, i)
                console.line(f"member {i}/{config.seeds}: global_seed {single.global_seed}")
                member_plan = make_plan(single, data.sizes, data.forget.y)
                with member_failure(config, i):
                    result = run_pass(member_plan, data, device, console, TaggedLogger(logger, member=i),
                                      run_dir / f"member-{i}", fitted[i])
                members.append(member_entry(config, i, member_plan.run_id, result))
        extra = {"config_file": config_file, "plan": plan.as_dict(), "seeds": config.seeds, "members": members,
                 "member_stats": member_statistics(members), **ensemble_outcome(members)}
        return extra, f" ({config.seeds} members)"

    return staged_run(config, device, console, members_of)


def member_entry(config: ExperimentConfig, i: int, member_run_id: str, result: dict) -> dict:
    return {"member": i, "run_id": member_run_id, "member_overrides": member_overrides(config, i), **to_builtin(result)}


def vectorised_members(config: ExperimentConfig, data, device, console: Console, logger, run_dir: Path,
                       fitted: list) -> list[dict]:
    """Every member's model fitted (sequentially: the auto cache holds one per seed), then
    one unlearning phase of theta [N, d] (EnsembleTrainer: a noisy phase and fine-tuning, or
    an empirical method's own epochs); each member then
    tested and evaluated as its single run would be. Its rows are the single run's
    evaluation rows (validation, forget, retain, test, forgetting metrics); the per-step
    batch rows of the single run are not written."""
    singles = [member_config(config, i) for i in range(config.seeds)]
    loggers = [TaggedLogger(logger, member=i) for i in range(config.seeds)]
    fits = []
    for i, single in enumerate(singles):
        with member_failure(config, i):
            fits.append(fit_model(single, data, device, console, loggers[i], run_dir / f"member-{i}", fitted[i]))
    plans = [make_plan(single, data.sizes, data.forget.y) for single in singles]
    seeds = [single.global_seed for single in singles]
    network = fits[0][0]
    ensemble = EnsembleModel(network, torch.stack([model.theta.detach() for model, _, _ in fits]),
                             default_chunk(device, config.dataset.batch_size))
    algorithm = attach_ensemble(plans[0], device, seeds, fits[0][1], [meta for _, meta, _ in fits], data)
    trainer = EnsembleTrainer(plans[0].config, data, ensemble, algorithm, seeds)
    console.line(f"unlearning {config.seeds} members as one ensemble (theta [{config.seeds}, "
                 f"{ensemble.num_parameters}])")
    start = time.perf_counter()
    trainer.unlearn()
    unlearn_seconds = (time.perf_counter() - start) / config.seeds
    certificate = {**trainer.certificate}
    console.line(f"certificate of every member after {trainer.noisy_steps} noisy steps: epsilon "
                 f"{fmt(certificate['certified_epsilon'])}, delta {fmt(certificate['certified_delta'])}"
                 + ("" if certificate["certificate_valid"] else " (WARNING: it does not hold for this run)"))
    members = []
    for i, (single, (model, meta, timings)) in enumerate(zip(singles, fits)):
        with member_failure(config, i):
            for row in trainer.history:
                logged = {k: (v[i].item() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
                require_finite_row(logged, config)
                loggers[i].log(logged)
            with torch.no_grad():
                model.theta.copy_(ensemble.theta.detach()[i])
            test_loss, test_acc = Evaluator(model)(data.test)
            require_finite_row({"Test_loss": test_loss}, config, model.theta)
            loggers[i].log({"Test_loss": test_loss, "Test_accuracy": test_acc})
            start = time.perf_counter()
            evaluation = evaluate_run(single, data, model, loggers[i].log, console)
        extra = {"certificate": certificate, "noisy_steps": trainer.noisy_steps, "test_accuracy": test_acc,
                 "test_loss": test_loss, "evaluation": evaluation,
                 "compute": {"gradient_evaluations": trainer.gradient_evaluations, "train_size": len(data.train)},
                 "timings": {**timings, "unlearn_seconds": unlearn_seconds,
                             "evaluation_seconds": time.perf_counter() - start}}
        extra.update(run_outcome(certificate, trainer.noisy_steps))
        members.append(member_entry(config, i, plans[i].run_id, extra))
    return members


def require_finite_row(row: dict, config: ExperimentConfig, theta=None) -> None:
    bad = {k: v for k, v in row.items()
           if k.endswith(("_loss", "_accuracy")) and isinstance(v, float) and not math.isfinite(v)}
    require_finite("(an ensemble member's evaluation)", "lower unlearning.max_lr or post_unlearning.max_lr "
                   f"(now {config.unlearning.max_lr}, {config.post_unlearning.max_lr})", theta, **bad)


def ensure_pretrained_members(config: ExperimentConfig, device, console: Console) -> list[Path]:
    """The auto cache entry of every member's seed (`--pretrain-only`), the missing ones
    pretrained together where they can be."""
    if config.seeds > 1:
        data = get_datamodule(config, device)
        if pretrains_together(config, data.input_shape):
            pretrain_missing_members(config, data, device, console)
    return [ensure_pretrained(member_config(config, i), device, console) for i in range(config.seeds)]

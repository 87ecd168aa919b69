"""The phases of one experiment: fit (pretrain or load) -> unlearn -> test.

Pretraining runs the training algorithm the config names (src/training/algorithm.py,
looked up in src/registry.py): the trainer names none of them.

Unlearning follows the original code: the algorithm prepares the
model, takes noisy steps on retain batches until its accountant reaches the target, and
the rest of the budget (`unlearning.epochs` passes over the retain set, noisy steps
included) is noise-free fine-tuning with a fresh optimizer. The trainer knows algorithms
only through the interface of src/unlearning/base.py, which it calls and does not import.

Speed: data stay on the device, batches are index tensors, and per-step metrics stay on
the device until a row has to be written, so a plain step does not wait for the host.
"""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from src.certificates import certificate_scope
from src.data.base_datamodule import DataModule, Split
from src.data.batches import make_generator, num_batches, shuffled_batches
from src.errors import ConfigError
from src.models.model import ModelFactory
from src.noise import project_l2_
from src.registry import TRAINING_ALGORITHMS
from src.seeds import derive_seed
from src.tracking import fmt
from src.training.evaluate import Evaluator
from src.training.finite import require_finite
from src.training.flat_model import FlatModel
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule
from src.training.own_epoch import run_own_epoch
from src.training.steps import StepResult, make_step

def build_model(config, input_shape, device) -> FlatModel:
    module = ModelFactory.create_model(config.model.name, config.model.n_classes, input_shape,
                                       seed=derive_seed(config.global_seed, "init"))
    return FlatModel(module, device)


class Console:
    """Epoch lines on stdout; a tqdm bar only when stderr is a terminal (quiet in log files)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bars = sys.stderr.isatty() and not quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            tqdm.write(text, file=sys.stdout)

    def epochs(self, total: int, desc: str):
        return tqdm(range(1, total + 1), desc=desc, unit="epoch", disable=not self.bars, leave=False,
                    file=sys.stderr)


class StepRows:
    """Per-step rows whose loss/accuracy are still device tensors; written in one sync."""

    def __init__(self):
        self.rows: list[dict] = []
        self.losses: list[torch.Tensor] = []
        self.correct: list[torch.Tensor] = []
        self.counts: list[int] = []

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int, row: dict) -> None:
        self.losses.append(loss)
        self.correct.append(correct)
        self.counts.append(count)
        self.rows.append(row)

    def drain(self) -> list[dict]:
        if not self.rows:
            return []
        losses = torch.stack(self.losses).tolist()
        correct = torch.stack(self.correct).tolist()
        out = []
        for row, loss, c, n in zip(self.rows, losses, correct, self.counts):
            out.append({"loss": loss, "accuracy": c / n if n else 0.0, **row})
        self.__init__()
        return out


class Trainer:
    def __init__(self, config, data: DataModule, model: FlatModel, algorithm, logger,
                 console: Console, seed_tag: str = ""):
        """`algorithm` is an unlearning algorithm (the interface of src/unlearning/base.py, which
        the trainer only calls). `seed_tag` names this pass's random streams (data order, evaluation augmentation):
        several passes in one run (a stream of deletion requests) each draw their own."""
        self.config = config
        self.data = data
        self.model = model
        self.algorithm = algorithm
        self.logger = logger
        self.console = console
        self.device = model.device
        self.pending = StepRows()
        self.post = None  # the fine-tuning optimizer, once the noisy phase is over
        # Release mode (secure_rng): nothing measured on a model before its certificate
        # holds (the pretrained model, the noisy phase) is logged or printed.
        self.log_pre_noise = not config.secure_rng
        self.data_generator = make_generator(derive_seed(config.global_seed, "unlearning-data" + seed_tag),
                                             self.device)
        eval_aug = data.augmentation if config.compat.augment_eval else None
        self.evaluate = Evaluator(model)
        # compat.augment_eval: the reference evaluated val/forget/retain through the
        # training transforms (D5); the test set never.
        self.evaluate_train_side = Evaluator(
            model, eval_aug, make_generator(derive_seed(config.global_seed, "eval-augmentation" + seed_tag),
                                            self.device))

    # -- logging -----------------------------------------------------------------------
    def log(self, row: dict) -> None:
        for pending in self.pending.drain():
            require_finite(f"at step {pending['state_step']}", self._advice(), batch_loss=pending["loss"])
            self.logger.log(pending)
        self.logger.log(row)

    def validate(self, split: Split, prefix: str, **keys) -> float:
        evaluate = self.evaluate if split is self.data.test else self.evaluate_train_side
        loss, acc = evaluate(split)
        where = f"(evaluation '{prefix}'" + (f", unlearning epoch {keys['unlearn_epoch']})" if keys else ")")
        require_finite(where, self._advice(prefix), self.model.theta, loss=loss)
        self.log({f"{prefix}_loss": loss, f"{prefix}_accuracy": acc, **keys})
        return acc

    def _advice(self, prefix: str = "") -> str:
        """What to change, by the phase the run is in."""
        u, post = self.config.unlearning, self.config.post_unlearning
        if prefix == "Val (Post Unlearning Setup)":
            return (f"check unlearning.init_sigma ({u.init_sigma}) and unlearning.init_model_clip "
                    f"({u.init_model_clip}), and the pretrained model")
        if self.post is not None:
            return f"lower post_unlearning.max_lr (now {post.max_lr})"
        return f"lower unlearning.max_lr (now {u.max_lr}) or the noise of the noisy phase"

    # -- phases ------------------------------------------------------------------------
    def unlearn(self) -> None:
        config, data, algorithm = self.config, self.data, self.algorithm
        u = config.unlearning
        self.steps_per_epoch = num_batches(len(data.retain), config.dataset.batch_size)
        self.noisy_steps = 0
        self.post = None
        self.gradient_evaluations = 0  # examples x loss gradients, the compute of the whole phase
        with torch.no_grad():
            algorithm.prepare(self.model, self.log)
        if self.log_pre_noise:
            setup_acc = self.validate(data.val, "Val (Post Unlearning Setup)")
            self.console.line(f"prepared for unlearning: val acc {fmt(setup_acc)} (low is expected after a small "
                              "initial projection or a fresh start; fine-tuning recovers it)")
        if algorithm.finished:
            self._end_noisy_phase(epoch=0)

        for epoch in self.console.epochs(u.epochs, "unlearning"):
            if not algorithm.finished and self._own_epoch(epoch):
                continue
            sum_loss = torch.zeros((), device=self.device)
            sum_correct = torch.zeros((), device=self.device, dtype=torch.long)
            seen = examples = 0  # examples logged; examples stepped on (the compute)
            batches = shuffled_batches(len(data.retain), config.dataset.batch_size, self.data_generator, self.device)
            for i, idx in enumerate(batches):
                noisy = not algorithm.finished
                if noisy:
                    x, y = self._batch(data.retain, idx)
                    self.noisy_steps += 1
                    result = algorithm.noisy_step(self.model, x, y, self.noisy_steps - 1)
                    stopped = algorithm.after_step(self.noisy_steps, result.sigma, result.eta, self.log)
                    if self.log_pre_noise:
                        self.pending.add(result.loss, result.correct, result.count,
                                         {"sigma_t": result.sigma, "eta_t": result.eta, "state_step": self.noisy_steps})
                    if stopped:
                        self._end_noisy_phase(epoch)
                else:
                    result = self._post_step(idx)
                    self.pending.add(result.loss, result.correct, result.count,
                                     {"sigma_t": 0.0, "eta_t": result.eta,
                                      "state_step": self.noisy_steps + self.post.step_count})
                examples += result.count
                if self.log_pre_noise or not noisy:
                    sum_loss += result.loss * result.count
                    sum_correct += result.correct
                    seen += result.count
                if u.fine_grained_validation and (self.log_pre_noise or algorithm.finished):
                    self._fine_grained(epoch, i)
            self.gradient_evaluations += examples
            if not (self.log_pre_noise or algorithm.finished):
                # Release mode: a state of the noisy phase is covered by no certificate.
                self.console.line(f"unlearn epoch {epoch}/{u.epochs}  (noisy phase: no metrics in release mode)")
                continue
            self._end_epoch(epoch, *((float(sum_loss) / seen, float(sum_correct) / seen) if seen else (None, None)))
        self._statistics_from_retain()  # the released model's buffers

    def _statistics_from_retain(self) -> None:
        """model.batchnorm_stats: retain: BatchNorm statistics recomputed on the retain set,
        so that they depend on retain data and theta only (src/models/buffers.py)."""
        if self.config.model.batchnorm_stats == "retain":
            self.model.recompute_running_stats(self.data.retain.x)

    def _own_epoch(self, epoch: int) -> bool:
        """An epoch the algorithm runs itself (UnlearningAlgorithm.unlearn_epoch), if it does."""
        return run_own_epoch(self, epoch)

    def _end_epoch(self, epoch: int, retain_loss: float | None, retain_acc: float | None) -> None:
        """The epoch's rows: the retain loss of the steps that may be logged (none, in release
        mode, when the whole epoch was noisy phase), then validation and forget accuracy."""
        data = self.data
        line = f"unlearn epoch {epoch}/{self.config.unlearning.epochs}"
        if retain_loss is not None:
            require_finite(f"in unlearning epoch {epoch}", self._advice(), retain_loss=retain_loss)
            self.log({"retain_loss": retain_loss, "retain_accuracy": retain_acc, "unlearn_epoch": epoch})
            line += f"  retain loss {fmt(retain_loss)} acc {fmt(retain_acc)}"
        val_acc = self.validate(data.val, "Val (Unlearn)", unlearn_epoch=epoch)
        forget_acc = self.validate(data.forget, "Forget (Unlearn)", unlearn_epoch=epoch)
        self.logger.flush()
        self.console.line(f"{line}  val acc {fmt(val_acc)}  forget acc {fmt(forget_acc)}")

    def test(self) -> dict:
        loss, acc = self.evaluate(self.data.test)
        require_finite("(evaluation 'Test')", self._advice("Test"), self.model.theta, loss=loss)
        self.log({"Test_loss": loss, "Test_accuracy": acc})
        self.console.line(f"test accuracy {fmt(acc)}")
        return {"test_accuracy": acc, "test_loss": loss}

    # -- the end of the noisy phase and the fine-tuning that follows ----------------------
    def _end_noisy_phase(self, epoch: int) -> None:
        row = {**self.algorithm.certificate_row(), **certificate_scope(self.config)}
        if self.noisy_steps == 0:
            row["state_step"] = 0
        self.log(row)
        self.certificate = row
        self._announce_certificate(row)
        self._statistics_from_retain()  # the certified model as released, for its measurements
        for split, prefix in ((self.data.val, "Val"), (self.data.forget, "Forget"), (self.data.retain, "Retain")):
            self.validate(split, f"{prefix} (Post Noise Addition)", unlearn_epoch=epoch)
        self._start_post_phase()

    def _announce_certificate(self, row: dict) -> None:
        plan = self.algorithm.plan()
        self.console.line(f"certificate after {self.noisy_steps} noisy steps: epsilon {fmt(row['certified_epsilon'])}, "
                          f"delta {fmt(row['certified_delta'])}")
        for remark in plan.remarks:
            self.console.line(f"  note: {remark}")
        if not row["certificate_valid"]:
            reasons = "; ".join(plan.invalid_reasons) or "see the plan"
            self.console.line(f"WARNING: the certificate does not hold for this run: {reasons}")
        for key in ("certificate_scope", "certificate_rests_on"):
            if row.get(key):
                self.console.line(f"{key.replace('_', ' ')}: {row[key]}")

    def _start_post_phase(self) -> None:
        post = self.config.post_unlearning
        if post.post_unlearn_clip is not False:
            with torch.no_grad():
                project_l2_(self.model.theta, post.post_unlearn_clip)
        total = self.config.unlearning.epochs * self.steps_per_epoch
        # A fresh optimizer (no noisy momentum history) over the whole budget (D20 kept);
        # the L2 term is in the loss, not in the optimizer (the original code).
        self.post = ScheduledOptimizer(make_optimizer(self.model.theta, post, weight_decay=0.0),
                                       make_schedule(post, total))
        self.post_step = make_step(self.model, self.data.retain, self.data.augmentation, self.post,
                                   self.config.dataset.batch_size, l2=post.weight_decay, sam=post.sam)

    def _post_step(self, idx):
        loss, correct = self.post_step(idx, self.data_generator)
        # The reference logs the schedule at the new step count (the original code).
        eta = self.post.schedule(self.post.step_count)
        return StepResult(loss, correct, idx.shape[0], 0.0, eta)

    def _fine_grained(self, epoch: int, i: int) -> None:
        """Per-step validation during the noisy phase, then mid-epoch (Figure 2, D15)."""
        if not self.algorithm.finished:
            at = epoch - 1 + i / self.steps_per_epoch
        elif i == self.steps_per_epoch // 2:
            at = epoch - 0.5
        else:
            return
        self.validate(self.data.val, "Val (Unlearn)", unlearn_epoch=at)
        self.validate(self.data.retain, "Retain (Unlearn)", unlearn_epoch=at)

    def _batch(self, split: Split, idx: torch.Tensor):
        x, y = split.x[idx], split.y[idx]
        if self.data.augmentation is not None:
            x = self.data.augmentation(x, self.data_generator)
        return x, y


# ---------------------------------------------------------------------------------------
# Pretraining


def pretrain(config, data: DataModule, model: FlatModel, log, console: Console, ckpt_dir=None, events=None) -> dict:
    """Train on the train split (retain + forget) with the training algorithm the config asks
    for (src/training/algorithm.py); returns the record stored with the checkpoint. `events`
    (a LearningEvents) records every step's outputs per train example (the learning-event
    proxies of src/evaluation/proxies.py), where the algorithm can (records_learning_events)."""
    algorithm = TRAINING_ALGORITHMS.get(config.training.method)(config)
    if events is not None and not algorithm.records_learning_events:
        raise ConfigError(f"training.algorithm: '{config.training.method}' training records no learning events "
                          "(its steps feed no outputs to them); cut the forget set's groups by another score")
    return algorithm.fit(data, model, log, console, ckpt_dir, events=events)


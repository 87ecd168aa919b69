"""SGD training (`training.algorithm: sgd`, the reference's fit()): shuffled minibatches of
the train split, the configured optimizer and schedule (SGD, RMSprop, Adam; SAM when
`training.sam` is set), checkpoints every `save_every` epochs and at the last (D7).

DP-SGD (src/training/dp_sgd.py) is this loop with other batches and another step.
"""

from __future__ import annotations

import torch

from src.data.batches import make_generator, num_batches, shuffled_batches
from src.seeds import derive_seed
from src.tracking import fmt
from src.training.algorithm import TrainingAlgorithm, refuse_foreign_keys
from src.training.checkpoints import checkpoint_name, save_checkpoint
from src.training.evaluate import Evaluator
from src.training.finite import require_finite
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule
from src.training.steps import make_step


class SGDTraining(TrainingAlgorithm):
    name = "sgd"
    records_learning_events = True  # the eager step feeds them its logits (src/training/steps.py)
    events = None  # a LearningEvents while fit records them

    @classmethod
    def check_config(cls, config, sizes=None) -> None:
        refuse_foreign_keys(config, cls)

    # -- what DP-SGD replaces ------------------------------------------------------------
    def start(self, data, model, optimizer, log) -> None:
        self.train_step = make_step(model, data.train, data.augmentation, optimizer, self.config.dataset.batch_size,
                                    sam=self.config.training.sam, events=self.events)

    def record(self) -> dict | None:
        """The mechanism's record (None: no privacy mechanism in the training)."""
        return None

    def batches(self, data, generator, device):
        return shuffled_batches(len(data.train), self.config.dataset.batch_size, generator, device)

    def step(self, idx, optimizer, generator):
        return self.train_step(idx, generator)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, data, model, log, console, ckpt_dir=None, events=None) -> dict:
        config = self.config
        self.events = events
        t = config.training
        device = model.device
        steps_per_epoch = num_batches(len(data.train), config.dataset.batch_size)
        generator = make_generator(derive_seed(config.global_seed, "pretrain-data"), device)
        optimizer = ScheduledOptimizer(make_optimizer(model.theta, t, t.weight_decay),
                                       make_schedule(t, max(t.epochs, 1) * steps_per_epoch))
        self.start(data, model, optimizer, log)
        evaluate = Evaluator(model)
        # secure_rng: whether DP-SGD's noise came from OS entropy (release mode needs it).
        meta = {"epochs": t.epochs, "dp_sgd": self.record(), "secure_rng": config.secure_rng}
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / checkpoint_name(0), model.state_dict(), {**meta, "epoch": 0})

        for epoch in console.epochs(t.epochs, "pretraining"):
            sum_loss = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for idx in self.batches(data, generator, device):
                loss, c = self.step(idx, optimizer, generator)
                sum_loss += loss * len(idx)
                correct += c
                seen += len(idx)
            train_loss, train_acc = float(sum_loss) / max(seen, 1), float(correct) / max(seen, 1)
            advice = f"lower training.max_lr (now {t.max_lr})"
            require_finite(f"in pretraining epoch {epoch}", advice, model.theta, train_loss=train_loss)
            log({"train_loss": train_loss, "train_accuracy": train_acc, "epoch": epoch})
            val_loss, val_acc = evaluate(data.val)
            require_finite(f"in pretraining epoch {epoch}", advice, val_loss=val_loss)
            log({"Val (Train)_loss": val_loss, "Val (Train)_accuracy": val_acc, "epoch": epoch})
            console.line(f"pretrain epoch {epoch}/{t.epochs}  loss {fmt(train_loss)} acc {fmt(train_acc)}  "
                         f"val acc {fmt(val_acc)}")
            # Saved when epoch % save_every == 0 and always at the last epoch (D7).
            if ckpt_dir is not None and (epoch % config.save_every == 0 or epoch == t.epochs):
                save_checkpoint(ckpt_dir / checkpoint_name(epoch), model.state_dict(), {**meta, "epoch": epoch})
        return meta

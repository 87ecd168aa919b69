"""An epoch that the unlearning algorithm runs itself (an empirical method's unlearn_epoch),
the same for the single trainer (trainer.py) and the ensemble's (ensemble.py)."""

from __future__ import annotations


def run_own_epoch(trainer, epoch: int, values=lambda v: v) -> bool:
    """Epoch `epoch` of an algorithm that runs its own epochs (unlearn_epoch), for the single
    trainer and the ensemble's alike (`values` turns the epoch's loss and accuracy into what
    the trainer's rows hold); False when the algorithm runs none."""
    result = trainer.algorithm.unlearn_epoch(trainer.model, epoch, trainer.log)
    if result is None:
        return False
    trainer.gradient_evaluations += result.examples
    if trainer.algorithm.finished:
        trainer._end_noisy_phase(epoch)
    trainer._end_epoch(epoch, values(result.loss), values(result.accuracy))
    return True

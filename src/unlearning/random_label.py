"""Random labels (RL_og upstream; Golatkar et al.'s "random labels" baseline) and the loop
SalUn builds on. Every epoch (or once, `resample_each_epoch: false`) the forget examples get
labels drawn uniformly from the C classes (`exclude_true_label: true`: from the other C - 1),
then CE is descended on

* `concat` (sharp-unlearn / RUM): the relabelled forget set and the retain set shuffled
  together, ceil((n_f + n_r) / b) steps per epoch;
* `sequential` (SalUn's own code on CIFAR-10): a pass over the relabelled forget set, then
  one over the retain set.
"""

from __future__ import annotations

from typing import Literal

import torch

from src.config import Section
from src.data.base_datamodule import Split
from src.data.batches import num_batches
from src.unlearning.empirical import EmpiricalUnlearning, example_cross_entropy


class RandomLabelConfig(Section):
    """`unlearning.random_label:`"""

    resample_each_epoch: bool = True
    exclude_true_label: bool = False
    schedule: Literal["concat", "sequential"] = "concat"


def random_labels(y: torch.Tensor, num_classes: int, exclude_true: bool, generator) -> torch.Tensor:
    if exclude_true:
        shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
        return (y + shift) % num_classes
    return torch.randint(0, num_classes, y.shape, generator=generator, device=y.device)


def relabels(config) -> bool:
    """Whether the forget set gets random labels. Always, unless compat.random_labels:
    upstream, where, as RL_og in the RUM / sharp-unlearn code, only CIFAR-10 (and SVHN, not
    here) is relabelled and every other dataset silently keeps its true labels
    (docs/differences.md#random-labels-datasets)."""
    name = config.dataset.name
    return config.compat.random_labels == "always" or (name.startswith("cifar10") and not name.startswith("cifar100"))


class RandomLabelLoop(EmpiricalUnlearning):
    """The RL loop; `options` is the section with the RL keys, `mask` the gradient mask."""

    mask = None

    @property
    def options(self):
        return self.config.unlearning.random_label

    def steps_per_epoch(self) -> int:
        n_r, n_f, b = len(self.data.retain), len(self.data.forget), self.config.dataset.batch_size
        if self.options.schedule == "concat":
            return num_batches(n_r + n_f, b)
        return num_batches(n_f, b) + num_batches(n_r, b)

    def _labels(self, e: int) -> torch.Tensor:
        """The forget set's labels for epoch e: [n_f]; an ensemble's [N, n_f], each member's
        row from its own label generator."""
        if e == 0 or self.options.resample_each_epoch:
            if not hasattr(self, "_label_generator"):
                self._label_generator = self.generator("random-labels", self.data.forget.y.device)
            y = self.data.forget.y
            draw = lambda generator: random_labels(y, self.data.num_classes,  # noqa: E731
                                                   self.options.exclude_true_label, generator)
            if self.ensemble:
                self._forget_labels = torch.stack([draw(generator) for generator in self._label_generator])
            else:
                self._forget_labels = draw(self._label_generator)
            if not relabels(self.config):  # the upstream code's silent fall-through
                self._forget_labels = y.expand(self._forget_labels.shape).clone()
        return self._forget_labels

    def run_epoch(self, e, tally) -> None:
        labels = self._labels(e)
        if self.options.schedule == "sequential":
            relabelled = self.stream(Split(self.data.forget.x, labels), "forget-order")
            for x, y in relabelled.epoch():
                self.descend(lambda: self.cross_entropy(x, y), tally, y.shape[-1], mask=self.mask)
            for x, y in self.retain_batches.epoch():
                loss, correct = self.descend(lambda: self.cross_entropy(x, y), tally, y.shape[-1], mask=self.mask)
                tally.retain(loss, correct, y.shape[-1])
            return
        retain = self.data.retain
        n_r = len(retain)
        if not hasattr(self, "_mixed_x"):  # the inputs never change, only the forget labels
            self._mixed_x = torch.cat([retain.x, self.data.forget.x])
            self._mixed_generator = self.generator("mixed-order", retain.y.device)
        y_all = torch.cat([retain.y.expand(*labels.shape[:-1], n_r), labels], dim=-1)
        mixed = self.batches(Split(self._mixed_x, y_all), self._mixed_generator)
        for idx in mixed.orders():
            x, y = mixed.take(idx)
            from_retain = idx < n_r

            def loss_fn(x=x, y=y, from_retain=from_retain):
                logits = self.model(x)
                losses = example_cross_entropy(logits, y)
                kept = from_retain.sum(-1)
                retain_loss = (losses.detach() * from_retain).sum(-1) / kept.clamp(min=1)
                correct = ((logits.detach().argmax(-1) == y) & from_retain).sum(-1)
                return losses.mean(-1), (retain_loss, correct, kept)

            _, (retain_loss, correct, kept) = self.descend(loss_fn, tally, y.shape[-1], mask=self.mask)
            if kept.any():
                tally.retain(retain_loss, correct, kept)


class RandomLabel(RandomLabelLoop):
    name = "random_label"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = RandomLabelConfig
    section_default = RandomLabelConfig()

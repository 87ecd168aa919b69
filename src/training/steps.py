"""One noise-free optimizer update from a batch of indices: gather, augment, loss,
backward, update. Pretraining and post-unlearning fine-tuning both take these steps.

The networks here have 4,000 to 20,000 parameters, so on a GPU a step is a few dozen
tiny kernels and costs what launching them costs. `GraphedStep` records the whole step
once as a CUDA graph and replays it for every full batch: one launch instead of dozens.
The random choices (batch indices, augmentation) are drawn outside the graph from the
same generator as the eager step, so both paths follow the same random stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from src.data.base_datamodule import Split
from src.training.optim import AdamW, ScheduledOptimizer
from src.training.sam import sam_gradient


@dataclass
class StepResult:
    """One step of the unlearning phase, noisy or not: its loss and accuracy on the device,
    its batch size, and the noise scale and step size it used."""

    loss: torch.Tensor  # 0-d, on the device (no host sync per step)
    correct: torch.Tensor
    count: int
    sigma: float
    eta: float


@dataclass
class EpochResult:
    """What one `unlearn_epoch` did: its mean training loss and accuracy, and its compute in
    gradient evaluations (one per example per loss gradient taken)."""

    loss: float
    accuracy: float
    examples: int


class EagerStep:
    # A LearningEvents (src/evaluation/proxies.py): fed the logits of each step's forward
    # pass, before the update (RUM's learning-event proxies, at no extra forward pass).
    events = None
    _record = None

    def __init__(self, model, split: Split, augmentation, optimizer: ScheduledOptimizer, l2: float = 0.0, sam=None):
        self.model = model
        self.split = split
        self.augmentation = augmentation
        self.optimizer = optimizer
        # post-unlearning: 0.5 * wd * ||theta||^2 in the loss (the original code)
        self.l2 = l2
        self.sam = sam  # a SAMConfig: the sharpness-aware gradient (src/training/sam.py)

    def _loss(self, x, y, choice=None):
        if self.augmentation is not None:
            x = self.augmentation.apply(x, choice)
        logits = self.model(x)
        if self._record is not None:  # once per step (SAM evaluates the loss twice)
            self._record.record(self._idx, logits, y)
            self._record = None
        loss = F.cross_entropy(logits, y)
        if self.l2:
            loss = loss + 0.5 * self.l2 * self.model.theta.pow(2).sum()
        return loss, (logits.detach().argmax(1) == y).sum()

    def __call__(self, idx: torch.Tensor, generator: torch.Generator):
        """One update; returns (loss, number correct) as device tensors."""
        choice = self.augmentation.draw(idx.shape[0], generator) if self.augmentation is not None else None
        x, y = self.split.x[idx], self.split.y[idx]
        self._idx, self._record = idx, self.events
        # autograd.grad, not backward(): no gradient accumulator stays attached to theta,
        # which would tie later CUDA-graph captures to the stream it was created on.
        loss, correct, self.model.theta.grad = sam_gradient(lambda: self._loss(x, y, choice), self.model.theta,
                                                            self.sam)
        self.optimizer.step()
        self.model.theta.grad = None
        return loss.detach(), correct


class GraphedStep(EagerStep):
    """Full batches replayed from a CUDA graph; other sizes, and the first few full batches
    (which warm up the kernels before capture), run eagerly."""

    WARMUP = 3

    def __init__(self, model, split, augmentation, optimizer, batch_size: int, l2: float = 0.0):
        super().__init__(model, split, augmentation, optimizer, l2)
        self.batch_size = batch_size
        device = model.device
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.choice = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.lr = torch.zeros((), device=device)
        self.graph = None
        self.eager_full_batches = 0

    def __call__(self, idx, generator):
        if idx.shape[0] != self.batch_size:
            return super().__call__(idx, generator)
        if self.graph is None and self.eager_full_batches < self.WARMUP:
            self.eager_full_batches += 1
            self.model.release_graph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = super().__call__(idx, generator)
            torch.cuda.current_stream().wait_stream(stream)
            return out
        if self.graph is None:
            self._capture()
        if self.augmentation is not None:
            self.choice.copy_(self.augmentation.draw(self.batch_size, generator))
        self.idx.copy_(idx)
        self.lr.fill_(self.optimizer.schedule(self.optimizer.step_count))
        self.optimizer.step_count += 1
        self.graph.replay()
        return self.loss_out.clone(), self.correct_out.clone()

    def _capture(self):
        theta = self.model.theta
        self.model.release_graph()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            x, y = self.split.x.index_select(0, self.idx), self.split.y.index_select(0, self.idx)
            loss, correct = self._loss(x, y, self.choice)
            (grad,) = torch.autograd.grad(loss, theta)
            theta.grad = grad
            self.optimizer.optimizer.step(self.lr)
            self.loss_out, self.correct_out = loss.detach(), correct
        theta.grad = None


def make_step(model, split: Split, augmentation, optimizer: ScheduledOptimizer, batch_size: int, l2: float = 0.0,
              sam=None, events=None):
    """A CUDA graph where it pays (a CUDA device, an optimizer whose state is all tensors,
    no SAM, no learning events recorded), the eager step elsewhere."""
    graphable = (model.device.type == "cuda" and not isinstance(optimizer.optimizer, AdamW) and sam is None
                 and events is None)
    if graphable:
        return GraphedStep(model, split, augmentation, optimizer, batch_size, l2)
    step = EagerStep(model, split, augmentation, optimizer, l2, sam)
    step.events = events
    return step

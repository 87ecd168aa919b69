"""How a run uses the CPU: a thread count sized to a training step's arithmetic
(src/threads.py) and, for runs with a lot of convolutional arithmetic, torch.compile
(src/training/compiled.py). experiment.py calls `configure` once, after torch is loaded
and before any model is built."""

from __future__ import annotations

import math

import torch

from src.data.datamodule import check_dataset_config, split_sizes
from src.models.model import ModelFactory
from src.models.work import training_step_flops
from src.training import compiled


def run_steps(config) -> int:
    """Optimizer steps of the whole run at most: pretraining (if it has to be done) and the
    unlearning budget, at the official split sizes."""
    sizes, _ = split_sizes(config)
    batch = config.dataset.batch_size
    return (config.training.epochs * math.ceil(sizes.train / batch)
            + config.unlearning.epochs * math.ceil(sizes.retain / batch))


def configure(config, budget, device: torch.device) -> tuple[int, bool]:
    """Set torch's threads and, where it pays, compiling; returns (threads, compiled)."""
    compiled.disable()  # a switch for this run only (tests run several in one process)
    if device.type != "cpu":  # the arithmetic runs on the GPU
        threads = budget.choose(None)
        torch.set_num_threads(threads)
        return threads, False
    step_flops = config_step_flops(config)
    threads = budget.choose(step_flops)
    torch.set_num_threads(threads)
    choice = config.torch_compile
    if choice is None:
        choice = compiled.worth_compiling(step_flops, run_steps(config))
    if choice:
        compiled.enable(config.dataset.batch_size)
    return threads, bool(choice)


def config_step_flops(config) -> int:
    """A training step of the config's model on its dataset, at its batch size."""
    shape = check_dataset_config(config)
    module = ModelFactory.create_model(config.model.name, config.model.n_classes, shape, seed=0)
    return training_step_flops(module, shape, config.dataset.batch_size)

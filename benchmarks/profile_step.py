"""Where the time of one training step goes (run by hand): milliseconds per step of each
piece of a tiny_net MNIST step, eager, on the chosen device.

    python benchmarks/profile_step.py [--device cpu|cuda] [--steps 400]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src import catalogue  # noqa: E402,F401  (fills the registries)
from src.config import load_config  # noqa: E402
from src.data.batches import make_generator, shuffled_batches  # noqa: E402
from src.data.image_transforms import mnist_augmentation  # noqa: E402
from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer  # noqa: E402
from src.training.trainer import build_model  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart_mnist5k.yaml"


def per_step_ms(fn, steps: int, device) -> float:
    for i in range(20):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    config = load_config(QUICKSTART)
    model = build_model(config, (28, 28, 1), device)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), constant_schedule(0.06))
    generator = make_generator(0, device)
    x_all = torch.randn(54000, 1, 28, 28, device=device)
    y_all = torch.randint(0, 10, (54000,), device=device)
    augment = mnist_augmentation((0.1307,), (0.3081,), device)
    batches = shuffled_batches(54000, 128, generator, device)[:-1] * 4
    x, y = x_all[batches[0]], y_all[batches[0]]

    def index(i):
        return x_all[batches[i]], y_all[batches[i]]

    def aug(i):
        return augment(x, generator)

    def forward_backward(i):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        model.theta.grad = None

    def update(i):
        model.theta.grad = torch.zeros_like(model.theta)
        optimizer.step()

    def full(i):
        xb, yb = x_all[batches[i]], y_all[batches[i]]
        xb = augment(xb, generator)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    from src.data.base_datamodule import Split
    from src.training.steps import make_step

    step = make_step(model, Split(x_all, y_all), augment, optimizer, 128)

    def project_step(i):  # what the trainer runs (a CUDA graph on a GPU)
        step(batches[i], generator)

    print(f"device {device}, torch {torch.__version__}, step {type(step).__name__}")
    for name, fn in [("index batch", index), ("augment", aug), ("forward+backward", forward_backward),
                     ("optimizer step", update), ("full step", full),
                     ("project step", project_step)]:
        print(f"{name:20s} {per_step_ms(fn, args.steps, device):8.3f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())

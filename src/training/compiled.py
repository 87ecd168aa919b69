"""torch.compile for long CPU runs of convolutional networks.

On the CPU a tiny_net_cifar step is half convolutions and half memory traffic between
them (bias, ReLU, pooling and their gradients, each a pass over 16 MB of activations).
Inductor fuses that traffic: a step takes about 0.75x the CPU time of the eager
channels-last step (benchmarks/README.md). Compiling costs 15-40 s of CPU once per
process (less when inductor's on-disk cache has the kernels), so it is only worth it for
runs with a lot of arithmetic: `worth_compiling`. experiment.py decides and calls
`enable` before any model is built; everything else (tests, the launcher, GPU runs) stays
eager. The compiled kernels sum in another order than the eager ones: the numbers agree
up to rounding, and are as deterministic.

Only the training forward of a full batch is compiled (one static shape, so one
compilation): evaluation (no gradients), the last short batch of an epoch and the
per-example gradients of DP-SGD (vmap) run eagerly. If compiling fails (no C++ compiler,
an unsupported platform) the run says so once and continues eagerly.
"""

from __future__ import annotations

import sys

import torch
from torch.func import functional_call

# A run's arithmetic (floating-point operations over all its steps) from which compiling
# pays: about 100 s of one core's convolutions, several times the compilation's cost.
COMPILE_MIN_FLOPS = 1e13

_batch_size: int | None = None  # set by enable(): the full batch that is compiled


def worth_compiling(step_flops: float, steps: int) -> bool:
    return step_flops * steps >= COMPILE_MIN_FLOPS


def enable(batch_size: int) -> None:
    """Compile the training forward of CPU models built from now on in this process."""
    global _batch_size
    _batch_size = int(batch_size)


def disable() -> None:
    global _batch_size
    _batch_size = None


def enabled() -> bool:
    return _batch_size is not None


def for_model(model) -> "CompiledForward | None":
    if _batch_size is None or model.device.type != "cpu" or model.buffers:
        return None  # buffers (BatchNorm statistics) change in a training forward: eager
    return CompiledForward(model, _batch_size)


class CompiledForward:
    def __init__(self, model, batch_size: int):
        self.batch_size = batch_size
        self.failed = False
        module, buffers, unflatten = model.module, model.buffers, model.unflatten

        def forward(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return functional_call(module, (unflatten(theta), buffers), (x,))

        self.function = torch.compile(forward, dynamic=False)

    def applies(self, x: torch.Tensor) -> bool:
        return not self.failed and torch.is_grad_enabled() and x.shape[0] == self.batch_size

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """The logits, or None when compiling failed (the caller then runs eagerly)."""
        try:
            return self.function(theta, x)
        except Exception as error:  # noqa: BLE001 - any failure of the compiler stack
            self.failed = True
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"note: torch.compile failed ({type(error).__name__}: {first_line[:200]}); "
                  "continuing without it", file=sys.stderr)
            return None

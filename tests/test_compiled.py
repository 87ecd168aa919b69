"""torch.compile for long CPU runs (src/training/compiled.py, src/training/cpu_setup.py):
when it is switched on, what it is used for, its fallback, and that it computes what the
eager network computes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from src.config import load_config
from src.models.model import ModelFactory
from src.threads import ThreadBudget
from src.training import compiled, cpu_setup
from src.training.flat_model import FlatModel

CIFAR = (32, 32, 3)


@pytest.fixture(autouse=True)
def switched_off_afterwards():
    yield
    compiled.disable()


@pytest.fixture
def fake_compile(monkeypatch):
    """torch.compile replaced by a recorder that runs the function eagerly."""
    calls = []

    def fake(function, **options):
        def run(theta, x):
            calls.append(tuple(x.shape))
            return function(theta, x)
        return run

    monkeypatch.setattr(torch, "compile", fake)
    return calls


def test_only_runs_with_a_lot_of_arithmetic_compile(quickstart_config, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    budget = ThreadBudget(cores=2, ceiling=None, requested=None)
    cpu = torch.device("cpu")
    assert cpu_setup.configure(quickstart_config(), budget, cpu) == (1, False)  # tiny_net on mnist_5k
    assert not compiled.enabled()
    cifar = quickstart_config(["dataset.name=cifar10", "dataset.input_shape=[32, 32, 3]", "model.name=tiny_net_cifar",
                               "training.epochs=400"])
    assert cpu_setup.run_steps(cifar) == 400 * 352 + 10 * 317  # 45,000 training images, 40,500 retained
    assert cpu_setup.configure(cifar, budget, cpu) == (2, True)
    assert compiled.enabled()
    short = quickstart_config(["dataset.name=cifar10", "dataset.input_shape=[32, 32, 3]", "model.name=tiny_net_cifar",
                               "training.epochs=1", "unlearning.epochs=1"])
    assert cpu_setup.configure(short, budget, cpu) == (2, False) and not compiled.enabled()
    # the config decides when it says so, and GPU runs never compile
    assert cpu_setup.configure(quickstart_config(["torch_compile=true"]), budget, cpu) == (1, True)
    assert cpu_setup.configure(cifar.model_copy(update={"torch_compile": False}), budget, cpu)[1] is False
    assert cpu_setup.configure(cifar, budget, torch.device("cuda")) == (2, False)


@pytest.fixture
def quickstart_config():
    quickstart = Path(__file__).resolve().parents[1] / "configs" / "quickstart_mnist5k.yaml"
    return lambda overrides=(): load_config(quickstart, ["device=cpu", *overrides])


def test_the_compiled_forward_serves_full_training_batches_only(fake_compile):
    compiled.enable(8)
    flat = FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1))
    assert flat.compiled is not None
    x = torch.randn(8, 3, 32, 32)
    flat(x)
    assert fake_compile == [(8, 3, 32, 32)]
    flat(x[:5])                        # the short last batch of an epoch
    with torch.no_grad():
        flat(x)                        # evaluation
    flat(x, flat.theta.detach() * 1)   # the functional path (per-example gradients)
    assert fake_compile == [(8, 3, 32, 32)]
    compiled.disable()
    assert FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1)).compiled is None


def test_a_failing_compiler_leaves_the_run_eager_with_a_note(monkeypatch, capsys):
    def broken(function, **options):
        def run(theta, x):
            raise RuntimeError("no C++ compiler found\nlong details")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    compiled.enable(4)
    flat = FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1))
    reference = ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1)
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(flat(x), reference(x), atol=1e-5)
    assert torch.allclose(flat(x), reference(x), atol=1e-5)
    assert capsys.readouterr().err.count("note: torch.compile failed (RuntimeError: no C++ compiler found)") == 1


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="compiles with inductor (30-60 s): set RUN_SLOW=1")
def test_the_compiled_network_computes_the_eager_gradients():
    """Really compiled (inductor, about 15 s of CPU with a cold cache): loss and gradient of
    a tiny_net_cifar batch agree with the eager network's up to rounding, bit for bit the
    same when repeated, and evaluation still runs eagerly."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    eager = FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=2))
    compiled.enable(16)
    fast = FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=2))
    compiled.disable()

    def loss_and_gradient(model):
        loss = F.cross_entropy(model(x), y)
        return loss.detach(), torch.autograd.grad(loss, model.theta)[0]

    loss, gradient = loss_and_gradient(eager)
    fast_loss, fast_gradient = loss_and_gradient(fast)
    assert not fast.compiled.failed
    assert torch.allclose(fast_loss, loss, rtol=1e-5)
    assert torch.allclose(fast_gradient, gradient, rtol=1e-4, atol=1e-6)
    again_loss, again_gradient = loss_and_gradient(fast)
    assert torch.equal(again_loss, fast_loss) and torch.equal(again_gradient, fast_gradient)

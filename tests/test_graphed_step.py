"""The CUDA-graph training step equals the eager one (runs where a GPU is; skipped on CPU)."""

from __future__ import annotations

import pytest
import torch

from src.config import load_config
from src.data.base_datamodule import Split
from src.data.batches import make_generator, shuffled_batches
from src.data.image_transforms import mnist_augmentation
from src.training.optim import ScheduledOptimizer, make_optimizer, onecycle_schedule
from src.training.steps import EagerStep, GraphedStep
from src.training.trainer import build_model
from tests.conftest import QUICKSTART

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("momentum, l2", [(0.0, 0.0), (0.9, 5e-4)])
def test_graph_replays_follow_the_eager_steps(momentum, l2):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = load_config(QUICKSTART, [f"training.momentum={momentum}"])
    generator = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1000, 1, 28, 28, device="cuda", generator=generator)
    y = torch.randint(0, 10, (1000,), device="cuda", generator=generator)
    results = []
    for kind in (EagerStep, GraphedStep):
        model = build_model(config, (28, 28, 1), "cuda")
        optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), onecycle_schedule(40, 0.06))
        args = (model, Split(x, y), mnist_augmentation((0.1307,), (0.3081,), "cuda"), optimizer)
        step = kind(*args, l2=l2) if kind is EagerStep else kind(*args, batch_size=128, l2=l2)
        data_generator = make_generator(1, "cuda")
        losses = []
        for _ in range(5):  # 8 batches per epoch, the last one partial (eager in both)
            for idx in shuffled_batches(1000, 128, data_generator, "cuda"):
                losses.append(step(idx, data_generator)[0].item())
        results.append((model.theta.detach().clone(), losses))
    (eager_theta, eager_losses), (graph_theta, graph_losses) = results
    assert isinstance(step, GraphedStep) and step.graph is not None
    assert torch.allclose(eager_theta, graph_theta, rtol=1e-4, atol=1e-5)
    assert eager_losses == pytest.approx(graph_losses, rel=1e-4)


@cuda
@pytest.mark.parametrize("sampling", ["poisson", "shuffle"])
def test_dp_sgd_graph_replays_follow_the_eager_steps(sampling):
    from src.training.dp_sgd import DPSGD, DPSGDCalibration

    torch.backends.cuda.matmul.allow_tf32 = False
    config = load_config(QUICKSTART, ["model.name=three_layer_net", "dataset.name=cifar10_feature",
                                      "dataset.input_shape=[512]"])
    generator = torch.Generator(device="cuda").manual_seed(0)
    split = Split(torch.randn(2000, 512, device="cuda", generator=generator),
                  torch.randint(0, 10, (2000,), device="cuda", generator=generator))
    calibration = DPSGDCalibration(
        l2_norm_clip=0.5, noise_multiplier=2.0, sampling_rate=128 / 2000, steps=80, sampling=sampling, group_size=10,
        group_rule="tight", target_epsilon=50, target_delta=1e-5, train_epsilon=5.0, train_delta=1e-6,
        achieved_train_epsilon=4.9, certified_epsilon=49.0, certified_delta=1e-5, seconds=0.0)
    results = []
    for use_graph in (False, True):
        model = build_model(config, (512,), "cuda")
        optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), onecycle_schedule(64, 0.06))
        dp = DPSGD(calibration, model, split, 128, seed=7)
        dp.use_graph = use_graph
        data_generator = make_generator(1, "cuda")
        losses = [dp.step(idx, optimizer)[0].item() for _ in range(4) for idx in dp.batches(data_generator)]
        results.append((model.theta.detach().clone(), losses, dp.graph))
    (eager_theta, eager_losses, _), (graph_theta, graph_losses, graph) = results
    assert graph is not None
    assert torch.allclose(eager_theta, graph_theta, rtol=1e-4, atol=1e-5)
    assert eager_losses == pytest.approx(graph_losses, rel=1e-4)

"""Models: the reference's architectures, parameter counts and flax initialisers."""

from __future__ import annotations

import math

import pytest
import torch

from src.models.init import TRUNCATED_STD
from src.models.model import ModelFactory, count_parameters
from src.training.flat_model import FlatModel

MNIST, CIFAR, FEATURES = (28, 28, 1), (32, 32, 3), (512,)


@pytest.mark.parametrize("name, shape, classes, expected", [
    # parameter counts of the original code, computed with flax init
    ("tiny_net", MNIST, 10, 3985), ("two_layer_net", MNIST, 10, 3985), ("tiny_net", CIFAR, 10, 15425),
    ("tiny_net", FEATURES, 10, 2625), ("tiny_net", FEATURES, 100, 3165),
    ("three_layer_net", MNIST, 10, 26506), ("three_layer_net", CIFAR, 10, 99722),
    ("three_layer_net", FEATURES, 10, 17802), ("three_layer_net", FEATURES, 100, 20772),
    ("tinier_net", MNIST, 10, 15910), ("tinier_net", CIFAR, 10, 61670), ("tinier_net", FEATURES, 10, 10470),
    ("tinier_net", FEATURES, 100, 12360),
    ("tiny_net_cifar", MNIST, 10, 19466), ("tiny_net_cifar", CIFAR, 10, 20042),
    ("simplenet", MNIST, 10, 824458), ("simplenet", CIFAR, 10, 1070794),
])
def test_parameter_counts_equal_the_reference(name, shape, classes, expected):
    assert count_parameters(ModelFactory.create_model(model_name=name, num_classes=classes, input_shape=shape)) == expected


@pytest.mark.parametrize("name, shape, scale", [("three_layer_net", FEATURES, 1.0), ("tiny_net_cifar", CIFAR, 2.0)])
def test_flax_truncated_normal_init(name, shape, scale):
    model = ModelFactory.create_model(name, 10, shape, seed=0)
    for param_name, p in model.named_parameters():
        if param_name.endswith("bias"):
            assert torch.all(p == 0)
            continue
        fan_in = p[0].numel()
        target = math.sqrt(scale / fan_in)
        # variance_scaling divides by the std of the truncated unit normal, so the
        # realised std is the target; samples never exceed 2 pre-correction stds.
        assert p.std().item() == pytest.approx(target, rel=0.08), param_name
        assert p.abs().max().item() <= 2 * target / TRUNCATED_STD + 1e-6


def test_same_seed_same_model_different_seed_different_model():
    a = FlatModel(ModelFactory.create_model("tiny_net", 10, MNIST, seed=5))
    b = FlatModel(ModelFactory.create_model("tiny_net", 10, MNIST, seed=5))
    c = FlatModel(ModelFactory.create_model("tiny_net", 10, MNIST, seed=6))
    assert torch.equal(a.theta, b.theta) and not torch.equal(a.theta, c.theta)


def test_flat_model_forward_equals_the_module_and_round_trips_state_dicts():
    module = ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1)
    reference = ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=1)
    flat = FlatModel(module)
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(flat(x), reference(x), atol=1e-6)
    assert torch.allclose(flat(x, flat.theta.detach() * 1.0), reference(x), atol=1e-6)  # the functional path
    state = flat.state_dict()
    assert set(state) == {n for n, _ in reference.named_parameters()}
    assert all(torch.equal(state[n], p) for n, p in reference.named_parameters())
    other = FlatModel(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=2))
    other.load_state_dict(state)
    assert torch.equal(other.theta, flat.theta)
    # theta is one vector: its norm is the global L2 norm over all parameters (D33).
    assert flat.norm() == pytest.approx(torch.sqrt(sum((p ** 2).sum() for p in reference.parameters())).item(), rel=1e-6)


@pytest.mark.parametrize("name", ["tiny_net_cifar", "simplenet"])
def test_convolutional_networks_run_channels_last_on_the_cpu_with_the_same_values_and_gradients(name):
    from torch.nn import functional as F

    from src.training.dp_sgd import per_example_gradients

    flat = FlatModel(ModelFactory.create_model(name, 10, CIFAR, seed=3))
    nchw = ModelFactory.create_model(name, 10, CIFAR, seed=3)  # the plain module, NCHW
    assert flat.channels_last
    x, y = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 3, 9, 1, 3])
    assert torch.allclose(flat(x), nchw(x), atol=1e-5)
    # one backward per example (channels-last) against the vmap path of DP-SGD (which has
    # no memory formats and so runs NCHW): the same gradients up to rounding
    grads, (losses, _) = per_example_gradients(flat, x, y)
    for i in range(len(y)):
        loss = F.cross_entropy(flat(x[i:i + 1]), y[i:i + 1])
        (own,) = torch.autograd.grad(loss, flat.theta)
        assert torch.allclose(loss, losses[i], atol=1e-5)
        assert torch.allclose(own, torch.cat([grads[n][i].flatten() for n in flat.names]), rtol=1e-4, atol=1e-6)
    # and bit for bit the same when repeated
    again = torch.autograd.grad(F.cross_entropy(flat(x), y), flat.theta)[0]
    assert torch.equal(again, torch.autograd.grad(F.cross_entropy(flat(x), y), flat.theta)[0])


def test_a_checkpoint_of_another_model_is_refused_with_the_parameter_named():
    from src.errors import CheckpointError

    flat = FlatModel(ModelFactory.create_model("tiny_net", 10, MNIST))
    state = FlatModel(ModelFactory.create_model("tinier_net", 10, MNIST)).state_dict()
    with pytest.raises(CheckpointError, match="layers.0.weight' has shape"):
        flat.load_state_dict(state, source="x.pt")


def test_convolutional_models_refuse_vector_inputs():
    from src.errors import ConfigError

    with pytest.raises(ConfigError, match="needs image inputs"):
        ModelFactory.create_model("tiny_net_cifar", 10, FEATURES)

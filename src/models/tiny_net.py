"""The reference's tiny networks (src/models/tiny_net.py upstream)."""

import torch
from torch import nn
from torch.nn import functional as F

from src.models.init import HE, flax_init_
from src.models.two_layer_net import MLP


def tiny_net(input_shape, num_classes, generator=None):
    """TinyNet: Dense 5 -> ReLU -> Dense n (3,985 parameters on MNIST)."""
    return MLP(input_shape, (5,), num_classes, generator)


def tinier_net(input_shape, num_classes, generator=None):
    """TinierNet: Dense 20 -> ReLU -> Dense n (the name notwithstanding, larger than TinyNet)."""
    return MLP(input_shape, (20,), num_classes, generator)


class TinyNetCIFAR(nn.Module):
    """CIFAR10TinykNet: conv32 -> avgpool -> conv64 -> avgpool -> global mean -> Dense n.

    All layers he_normal with zero bias; 'SAME' 3x3 convolutions (padding 1). 20,042
    parameters for CIFAR-10.
    """

    # On the CPU, FlatModel hands this network its images in NHWC memory order (see there).
    channels_last = True

    def __init__(self, input_shape, num_classes, generator=None):
        super().__init__()
        channels = input_shape[-1]
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.dense = nn.Linear(64, num_classes)
        for layer in (self.conv1, self.conv2, self.dense):
            flax_init_(layer, HE, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.conv2(x)), 2)
        return self.dense(x.mean(dim=(2, 3)))


def tiny_net_cifar(input_shape, num_classes, generator=None):
    _require_image(input_shape, "tiny_net_cifar")
    return TinyNetCIFAR(input_shape, num_classes, generator)


def _require_image(input_shape, name):
    if len(input_shape) != 3:
        from src.errors import ConfigError

        raise ConfigError(
            f"model.name: '{name}' is a convolutional network and needs image inputs "
            f"(dataset.input_shape [H, W, C]), got {list(input_shape)}"
        )

"""SimpleNet (simplenet.py upstream): conv32 -> avgpool -> conv64 -> avgpool -> Dense 256 -> Dense n.

Not used by any reference config; kept because the reference ships it. lecun-normal
everywhere. The flatten is in (C, H, W) order, unlike flax's (H, W, C): a permutation
of the first dense layer's inputs, the same distribution of functions.
"""

import torch
from torch import nn
from torch.nn import functional as F

from src.models.init import LECUN, flax_init_
from src.models.tiny_net import _require_image


class SimpleNet(nn.Module):
    channels_last = True  # see FlatModel

    def __init__(self, input_shape, num_classes, generator=None):
        super().__init__()
        _require_image(input_shape, "simplenet")
        height, width, channels = input_shape
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.dense1 = nn.Linear(64 * (height // 4) * (width // 4), 256)
        self.dense2 = nn.Linear(256, num_classes)
        for layer in (self.conv1, self.conv2, self.dense1, self.dense2):
            flax_init_(layer, LECUN, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.conv2(x)), 2)
        return self.dense2(torch.relu(self.dense1(x.flatten(1))))


def simplenet(input_shape, num_classes, generator=None):
    return SimpleNet(input_shape, num_classes, generator)

"""A user's own network: a small convolutional network with BatchNorm, for 8x8 digits.

The factory has the signature every model of the repository has: the input shape
channels-last as configs write it ([8, 8, 1] here), the number of classes, and a
torch.Generator to draw the initial weights from (layers left to PyTorch's default
initialisers are seeded too: the repository seeds the global generator around this call).
The module takes channels-first batches [B, C, H, W] and returns [B, num_classes] logits.
"""

from torch import nn


def make_net(input_shape, num_classes, generator=None):
    height, width, channels = input_shape
    net = nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(32 * (height // 2) * (width // 2), num_classes),
    )
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(layer.bias)
    return net

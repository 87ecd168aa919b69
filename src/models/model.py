"""ModelFactory: the registry of model names used in configs (`model.name`)."""

import torch
from torch import nn

from src.models.linear import linear
from src.models.simplenet import simplenet
from src.models.tiny_net import tinier_net, tiny_net, tiny_net_cifar
from src.models.two_layer_net import three_layer_net, two_layer_net
from src.models.worst_case import worst_case


class ModelFactory:
    registry = {
        "two_layer_net": two_layer_net,
        "three_layer_net": three_layer_net,
        "tiny_net": tiny_net,
        "tinier_net": tinier_net,
        "tiny_net_cifar": tiny_net_cifar,
        "simplenet": simplenet,
        "linear": linear,
        "worst_case": worst_case,  # the audit's synthetic worst case, not a network
    }
    # Models whose training loss (cross-entropy plus an l2 term) is strongly convex in
    # theta: the only ones the Langevin and D2D certificates hold for.
    convex = frozenset({"linear"})

    # Models made for one input shape: their name promises it, and a config that runs
    # them elsewhere is more likely a typo than an experiment (tiny_net_cifar would
    # silently become a 1-channel network on MNIST).
    made_for = {"tiny_net_cifar": (32, 32, 3)}

    @classmethod
    def check_input_shape(cls, model_name: str, input_shape) -> None:
        wanted = cls.made_for.get(model_name)
        if wanted is not None and tuple(input_shape) != wanted:
            from src.errors import ConfigError

            fits = ", ".join(n for n in cls.registry if cls.made_for.get(n, tuple(input_shape)) == tuple(input_shape))
            raise ConfigError(f"model.name: '{model_name}' is made for inputs of shape {list(wanted)} (CIFAR-10), "
                              f"this dataset's are {list(input_shape)}; models for them: {fits}")

    @classmethod
    def create_model(cls, model_name: str, num_classes: int, input_shape, seed: int | None = None) -> nn.Module:
        """Build `model_name` for inputs of `input_shape` (channels-last, as in configs).

        The initial weights are drawn from a CPU generator seeded with `seed`, so the same
        seed gives the same model on every device.
        """
        if model_name not in cls.registry:
            raise ValueError(f"unknown model '{model_name}'; known: {', '.join(cls.registry)}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return cls.registry[model_name](tuple(input_shape), num_classes, generator)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

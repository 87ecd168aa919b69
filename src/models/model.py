"""ModelFactory: the registry of model names used in configs (`model.name`), and the
user's own factories (`model.name: my_models.py:make_net`, src/plugins.py).

Every factory, built-in or not, is called as factory(input_shape, num_classes, generator):
`input_shape` channels-last as in configs ((28, 28, 1), (512,)), the module it returns takes
channels-first batches ([B, C, H, W] or [B, d]) and gives [B, num_classes] logits, and it
draws its initial weights from `generator` (a seeded torch.Generator, or None).
"""

import torch
from torch import nn

from src import plugins
from src.errors import ConfigError

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
            fits = ", ".join(n for n in cls.registry if cls.made_for.get(n, tuple(input_shape)) == tuple(input_shape))
            raise ConfigError(f"model.name: '{model_name}' is made for inputs of shape {list(wanted)} (CIFAR-10), "
                              f"this dataset's are {list(input_shape)}; models for them: {fits}")

    @classmethod
    def create_model(cls, model_name: str, num_classes: int, input_shape, seed: int | None = None) -> nn.Module:
        """Build `model_name` for inputs of `input_shape` (channels-last, as in configs).

        The initial weights are drawn from a CPU generator seeded with `seed`, so the same
        seed gives the same model on every device.
        """
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if plugins.is_spec(model_name):
            # PyTorch's default initialisers draw from the global generator: a factory that
            # leaves some layers to them (biases, say) still builds the same model from the
            # same seed, and leaves the caller's global stream as it was.
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(seed)
                return _user_model(model_name, num_classes, tuple(input_shape), generator)
        if model_name not in cls.registry:
            raise ValueError(f"unknown model '{model_name}'; known: {', '.join(cls.registry)}")
        return cls.registry[model_name](tuple(input_shape), num_classes, generator)


def _user_model(spec: str, num_classes: int, input_shape: tuple, generator) -> nn.Module:
    factory = plugins.resolve(spec, key="model.name", base_dir=None)  # made absolute by the schema
    if not callable(factory):
        raise ConfigError(f"model.name: '{spec}' is a {type(factory).__name__}, expected a function "
                          "factory(input_shape, num_classes, generator) returning a torch.nn.Module")
    try:
        module = factory(input_shape, num_classes, generator)
    except Exception as e:  # noqa: BLE001 - the user's code: one line here, the traceback with --debug
        raise ConfigError(f"model.name: '{spec}' failed for input_shape {list(input_shape)}, {num_classes} classes: "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.name: '{spec}' returned a {type(module).__name__}, expected a torch.nn.Module")
    if not any(True for _ in module.parameters()):
        raise ConfigError(f"model.name: '{spec}' returned a module without parameters; there is nothing to train")
    return module


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

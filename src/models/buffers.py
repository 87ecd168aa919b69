"""Buffers computed from data (BatchNorm running statistics), and recomputing them.

A network's parameters are theta, what the certificates are about. Its buffers are not
trained, but some are computed from the data a forward pass sees in training mode: the
running mean and variance of BatchNorm. After pretraining they carry every training
example, the forget set included, and the noisy phase never touches them (a forward with
gradients normalises by the batch's own statistics; the running ones only decay by the
momentum, never to zero). A certified model is therefore released with statistics
recomputed from the retain set (`model.batchnorm_stats: retain`): a function of the
certified theta and of retain data, which both neighbouring datasets contain, so
post-processing leaves the certificate as it is. Without that key a certified method
refuses such a network and names the layer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

# Examples per forward pass when statistics are recomputed (as the evaluator's chunks).
CHUNK = 2048


def running_stats_layers(module: nn.Module) -> list[tuple[str, _NormBase]]:
    """The normalisation layers that keep running statistics (BatchNorm, InstanceNorm with
    track_running_stats): the data-dependent buffers this module can recompute."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, _NormBase) and m.track_running_stats]


def data_dependent_buffers(module: nn.Module, input_shape) -> list[str]:
    """Every buffer (dotted name) that a training-mode forward pass changes: found by
    running a copy of the module on two random examples, so that a user's own layer with
    such state is found too, whatever its type."""
    probe = copy.deepcopy(module).train()
    before = {name: b.detach().clone() for name, b in probe.named_buffers()}
    if not before:
        return []
    shape = tuple(input_shape)
    generator = torch.Generator().manual_seed(0)
    size = (2, shape[-1], *shape[:-1]) if len(shape) == 3 else (2, *shape)
    with torch.no_grad():
        probe(torch.randn(size, generator=generator))
    changed = [name for name, b in probe.named_buffers() if not torch.equal(b, before[name])]
    recomputable = {f"{layer}.{b}" if layer else b for layer, m in running_stats_layers(module)
                    for b, _ in m.named_buffers(recurse=False)}
    # A running-statistics layer counts even when one probe leaves a buffer as it was.
    return sorted(set(changed) | recomputable)


def not_recomputable(module: nn.Module, names: list[str]) -> list[str]:
    """The data-dependent buffers among `names` that belong to no running-statistics layer."""
    owned = {f"{layer}.{b}" if layer else b for layer, m in running_stats_layers(module)
             for b, _ in m.named_buffers(recurse=False)}
    return [n for n in names if n not in owned]


def layer_of(buffer_name: str) -> str:
    return buffer_name.rpartition(".")[0] or "(top level)"


@torch.no_grad()
def recompute_running_stats_(module: nn.Module, forward, x: torch.Tensor, chunk: int = CHUNK) -> int:
    """Reset every running-statistics layer of `module` and recompute it from `x` alone.

    `forward(xb)` runs the network in training mode on a chunk. The chunks are equal up to
    one example (no chunk of one, which BatchNorm cannot normalise) and weighted by their
    size (momentum n_i / n_seen), so each statistic is the example-weighted mean of the
    chunks' statistics: for a layer whose input no other normalisation precedes, exactly the
    mean and unbiased variance over `x` when `x` fits one chunk. Nothing else is read, so
    the result depends on `x` and the parameters only. Returns the number of layers."""
    layers = [m for _, m in running_stats_layers(module)]
    if not layers or len(x) == 0:
        return len(layers)
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
    seen = 0
    try:
        for xb in torch.tensor_split(x, -(-len(x) // chunk)):
            seen += len(xb)
            for m in layers:
                m.momentum = len(xb) / seen
            forward(xb)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
    return len(layers)


def check_buffers(module: nn.Module, config, input_shape, certified: bool) -> None:
    """Refuse what would release, or train on, statistics the certificate does not cover
    (ConfigError naming the layers): any data-dependent buffer under DP-SGD training; for a
    certified method, buffers that cannot be recomputed, and BatchNorm statistics unless
    `model.batchnorm_stats: retain`. Empirical methods keep them as training left them."""
    from src.errors import ConfigError

    names = data_dependent_buffers(module, input_shape)
    if not names:
        return
    layers = ", ".join(f"'{layer}' ({type(module.get_submodule(layer if layer != '(top level)' else '')).__name__})"
                       for layer in dict.fromkeys(layer_of(n) for n in names))
    model = config.model.name
    if config.training.dp_sgd is not None:
        raise ConfigError(f"model.name: '{model}' has layers with statistics computed from data ({layers}); "
                          "training.dp_sgd cannot train it: a batch-normalised example's gradient depends on the "
                          "other examples of its batch, which per-example clipping and noise do not bound. Use a "
                          "network without BatchNorm (GroupNorm or LayerNorm keep no statistics)")
    memorization = config.dataset.forget.memorization
    if config.dataset.forget.strategy == "memorization" and memorization.source == "subsample":
        require_no_running_stats(module, "the memorization estimate (dataset.forget.memorization.source: subsample, "
                                         "its models trained as one ensemble)")
    if not certified:
        return
    algorithm = config.unlearning.algorithm
    other = not_recomputable(module, names)
    if other:
        raise ConfigError(f"model.name: '{model}' has buffers that a forward pass computes from data and that are "
                          f"not BatchNorm statistics ({', '.join(other)}); unlearning.algorithm '{algorithm}' "
                          "certifies the parameters only, and these would be released carrying the forget set. "
                          "Make them parameters, compute them without data, or use an empirical method")
    if config.model.batchnorm_stats != "retain":
        raise ConfigError(f"model.batchnorm_stats: 'training' keeps the running statistics of layer(s) {layers}, "
                          "computed from a training set that holds the forget set, but unlearning.algorithm "
                          f"'{algorithm}' certifies the parameters only. Set model.batchnorm_stats: retain (recomputed "
                          "on the retain set after unlearning: post-processing, the certificate holds) or use an "
                          "empirical method")


def require_no_running_stats(module: nn.Module, what: str) -> None:
    """For the vmapped paths (ensembles, memorization estimates): a training forward there
    would update one set of buffers for every member at once."""
    layers = [name or "(top level)" for name, _ in running_stats_layers(module)]
    if layers:
        from src.errors import ConfigError

        raise ConfigError(f"model.name: {what} cannot run a network with BatchNorm running statistics (layers "
                          f"{', '.join(layers)}): its members share one module's buffers")

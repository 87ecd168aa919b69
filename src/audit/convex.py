"""The worlds of the convex methods' certificates: whole chains, not noisy phases.

Langevin unlearning (Chien et al. 2024) certifies the law of its chain, drawn from the
initial law N(init_mean, 2 sigma^2/m I), trained T steps on D and continued K steps on
D_r, against the law of the same chain run on D_r from the same initial law for T + K
steps in all (Langevin retraining; src/unlearning/langevin.py). Descent-to-Delete (Neel et
al. 2021) certifies its published model (noise-free descent on D, I steps on D_r, then
Gaussian noise) against the same procedure with nothing left to delete: trained on D_r,
the same I steps on D_r, the same noise (src/unlearning/d2d.py). The training is part of
either mechanism, so two fixed pretrained starts are not the worlds:

  world A: N chains, each from its own draw of the initial law, trained by the method's
           training chain on the train split (src/training/langevin.py: the same steps
           and the same seed streams as a single run with the chain's seed), then
           unlearned by the method's own steps (its `step_update`, request s on D_s);
  world B: N chains from the same initial law, trained on the retain set alone for the
           same T steps, then the same steps on the retain set (nothing to delete).

A group of chains is one [chains, d] tensor: every full-batch gradient is one vmap of the
model's forward over the chains, on data they all share, and each chain draws its initial
point, its training noise and its unlearning noise from its own streams. When the initial
law is a point and the training noise-free (D2D), every chain's training is the same
computation: it runs once.

The projection score measures along the difference of the two worlds' mean models, which
are estimated on the chains that choose the test only (audit.py), never on those that
evaluate it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.func import vmap
from torch.nn import functional as F

from src.audit.bounds import split_halves
from src.audit.chains import GROUP, WeakenedNoise
from src.data.batches import make_generator
from src.errors import UserError
from src.registry import UNLEARNING_ALGORITHMS
from src.runner import make_plan
from src.seeds import derive_seed
from src.training.ensemble import attach_ensemble
from src.training.langevin import ChainConstants, initial_point_, langevin_step_
from src.training.trainer import build_model

WORLDS = {
    "A": "trained on the train split (D) from the initial law, then unlearned by the method's steps on D without "
         "the forget set",
    "B": "trained on the retain set (D_r) from the same initial law for the same training steps, then the same "
         "unlearning steps on D_r (nothing to delete)",
}


def audited_as_chains(config) -> bool:
    """Whether `config`'s method is audited between its own chains (this module)."""
    return UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm).audited_as_chains


def check_chain_audit(config, plan, sizes=None) -> None:
    """Refuse, before any chain runs, what the chains cannot reproduce as certified."""
    algorithm = config.unlearning.algorithm
    if sizes is not None:
        raise UserError(f"unlearning.algorithm: '{algorithm}' is audited between whole chains trained from its "
                        "initial law; a request of a stream has no such worlds here")
    if config.compat.langevin_clipping != "none":
        raise UserError(f"compat.langevin_clipping: '{config.compat.langevin_clipping}' cannot be audited: the "
                        "chains are run with the objective's gradient (no per-example clipping), as certified; "
                        "set none")
    details = plan.privacy.details
    if details.get("d2d_secret_state") is False:
        raise UserError(f"unlearning.d2d.requests: {[r['size'] for r in details['requests']]} cannot be audited: "
                        "D2D's sequence without a secret state compares each request with a reference this audit "
                        "does not build; audit one request (unlearning.d2d.steps)")


def training_chain(config, n: int, noise_scale: float = 1.0) -> ChainConstants:
    """The training chain on n examples; a weakened audit scales its temperature (the
    initial law's and every step's noise scale with sigma)."""
    chain = ChainConstants.from_config(config, n=n)
    return dataclasses.replace(chain, sigma=chain.sigma * noise_scale) if noise_scale != 1.0 else chain


def world_description(config, plan, data) -> dict:
    """What the two worlds are, for audit.json."""
    chain = ChainConstants.from_config(config, n=len(data.train))
    law = (f"N({chain.init_mean:g}, 2 sigma^2/m I) with sigma {chain.sigma:g}, m {chain.m:g}" if chain.sigma
           else f"the point {chain.init_mean:g} (noise-free training)")
    steps = plan.privacy.noisy_steps
    return {"world_A": f"{WORLDS['A']}: {chain.T} training steps on {len(data.train)} examples, {steps} unlearning "
                       f"step(s) on {len(data.retain)} (request by request, the later requests' examples still in)",
            "world_B": f"{WORLDS['B']}: {chain.T} training steps and {steps} more on {len(data.retain)} examples",
            "initial_law": law, "training_steps": chain.T, "unlearning_steps": steps,
            "direction": "difference of the two worlds' mean models over the chains that choose the test"}


def objective_grads(network, theta: torch.Tensor, parts, m: float) -> torch.Tensor:
    """[chains, d]: each chain's gradient of its mean cross-entropy over all rows of `parts`
    [(x, y), ...] plus (m/2) ||theta||^2 (training/langevin.py: objective_grad, per chain).
    Chains share no parameter, so the gradient of the sum over chains is every chain's own."""
    theta = theta.detach().requires_grad_(True)
    total = sum(int(y.shape[0]) for _, y in parts)
    chains = theta.shape[0]
    with torch.enable_grad():
        loss = 0.0
        for x, y in parts:
            if y.shape[0] == 0:
                continue
            logits = vmap(lambda row: network(x, theta=row))(theta)  # [chains, n, classes]
            loss = loss + F.cross_entropy(logits.flatten(0, 1), y.repeat(chains), reduction="sum") / total
        objective = loss + 0.5 * m * theta.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, theta)
    return grad


def train_chains(network, chain: ChainConstants, seeds, parts, device) -> torch.Tensor:
    """[len(seeds), d] after chain.T steps of the training chain on `parts`, chain i drawn
    from the initial law and the noise of a single run with global seed seeds[i]
    (src/training/langevin.py: begin_chain and LangevinTraining.fit)."""
    generators = [make_generator(derive_seed(seed, "langevin-training"), device) for seed in seeds]
    theta = torch.empty(len(seeds), network.num_parameters, device=device, dtype=network.theta.dtype)
    for row, generator in zip(theta, generators):
        initial_point_(row, chain, generator)
    d = network.num_parameters

    def noise() -> torch.Tensor:
        return torch.stack([torch.randn(d, generator=g, device=device) for g in generators])

    for _ in range(chain.T):
        langevin_step_(theta, objective_grads(network, theta, parts, chain.m), chain.eta, chain.noise_std, noise)
    return theta


def world_outputs(config, data, world: str, seeds, device, noise_scale: float = 1.0,
                  group: int = GROUP) -> tuple[torch.Tensor, int]:
    """theta [len(seeds), d] of world `world`'s chains at the end of the method's noisy
    phase, and the number of its noisy steps."""
    network = build_model(config, data.input_shape, device)
    chain = training_chain(config, len(data.train), noise_scale)
    retain = [(data.retain.x, data.retain.y)]
    training_data = [(data.train.x, data.train.y)] if world == "A" else retain
    outputs, steps = [], 0
    for g0 in range(0, len(seeds), group):
        members = seeds[g0:g0 + group]
        plan = make_plan(config, data.sizes)  # a fresh algorithm (its accountant has state)
        algorithm = attach_ensemble(plan, device, members)
        if noise_scale != 1.0:
            algorithm.context.noise = WeakenedNoise(algorithm.context.noise, noise_scale)
        if chain.sigma == 0:  # a point, noise-free descent: every chain trains to the same model
            theta = train_chains(network, chain, members[:1], training_data, device).expand(len(members), -1).clone()
        else:
            theta = train_chains(network, chain, members, training_data, device)
        if world == "A":
            _check_trained(config, algorithm, network, theta, data, device)
        schedule = algorithm.schedule
        for step in range(1, schedule.total_steps + 1):
            request = schedule.serving(step)
            parts = retain + ([algorithm.pending_forget(data.forget, request)] if world == "A" else [])
            grad = objective_grads(network, theta, parts, algorithm.chain().m)
            algorithm.step_update(theta, grad, request, step == schedule.ends[request])
        outputs.append(theta.detach().cpu())
        steps = schedule.total_steps
    return torch.cat(outputs), steps


def mean_models(outputs_a: torch.Tensor, outputs_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two worlds' mean models over the chains that choose the test (the first half,
    bounds.split_halves): the projection measures along their difference, which the chains
    that evaluate the test never influence."""
    select, _ = split_halves(len(outputs_a))
    return outputs_a[select].mean(0), outputs_b[select].mean(0)


def _check_trained(config, algorithm, network, theta, data, device) -> None:
    """The method's own check of its trained models (D2D: within r of the optimum of D),
    on every distinct trained model of world A."""
    distinct = theta[:1] if torch.equal(theta, theta[:1].expand_as(theta)) else theta
    model = build_model(config, data.input_shape, device)
    algorithm.context.data = data
    for row in distinct:
        with torch.no_grad():
            model.theta.copy_(row)
        algorithm.check_trained(model, lambda entry: None)

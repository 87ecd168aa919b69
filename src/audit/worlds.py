"""The two worlds of the certificate's definition, as starting points of the noisy phase.

(epsilon, delta)-certified unlearning: the unlearned output, started from the model
trained on all the data (world A), must be (epsilon, delta)-indistinguishable from the
same noisy phase started from a model that never saw the forget set (world B).
  * `pretrained_starts`: A = the config's pretrained model, B = the same recipe trained on
    the retain set alone; both from the `pretrained: auto` cache (trained once if missing).
  * `adversarial_starts`: two points 2 C0 apart on the set the initial projection maps
    every model into, the worst case the accountants assume; their direction is fixed by
    world A's pretrained model alone (world B's is never trained for them).
  * `trained_starts`: the training randomness included, as the definition's distribution:
    each chain its own A(D) and its own A(D_r), the config's recipe from the chain's own
    initialisation and data order (one ensemble per world, src/training/ensemble.py);
  * `projected`: a start as the noisy phase sees it, after the initial projection (the
    projection score must measure along the direction between these, not the raw starts).
"""

from __future__ import annotations

import torch

from src.privacy.pabi import init_ball_radius
from src.runner import ensure_pretrained
from src.training.checkpoints import load_checkpoint
from src.training.trainer import build_model


def _load_theta(config, path, input_shape, device) -> torch.Tensor:
    model = build_model(config, input_shape, device)
    state, _ = load_checkpoint(path)
    model.load_state_dict(state, source=str(path))
    return model.theta.detach().clone()


def pretrained_start_a(config, data, device, console) -> tuple[torch.Tensor, str]:
    """World A's pretrained model (trained on all the data) and its checkpoint path."""
    path_a = ensure_pretrained(config, device, console, data)
    return _load_theta(config, path_a, data.input_shape, device), str(path_a)


def pretrained_starts(config, data, device, console) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(theta_A, theta_B, where they came from). The audit always uses the cache of the
    config's training recipe, whatever `training.pretrained` says, so both worlds follow
    the same recipe."""
    a, path_a = pretrained_start_a(config, data, device, console)
    path_b = ensure_pretrained(config, device, console, data, without_forget=True)
    b = _load_theta(config, path_b, data.input_shape, device)
    return a, b, {"world_A": path_a, "world_B": str(path_b)}


def projected(config, theta: torch.Tensor) -> torch.Tensor:
    """`theta` after the algorithm's initial projection without its noise: where the noisy
    phase really starts. Methods without one (their `prepare` does not project) start
    where they are."""
    from src.registry import UNLEARNING_ALGORITHMS

    if not getattr(UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm), "projects_initially", False):
        return theta
    from src.unlearning.initial_projection import initial_projection_

    out = theta.detach().clone()
    initial_projection_(out, config, None, lambda row: None, sigma0=0.0)
    return out


def adversarial_starts(config, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Two antipodal points of the initial projection's set, along `theta`.

    clip: +-C0 theta / ||theta|| (the L2 ball of radius C0); clamp: +-C0 sign(theta), two
    opposite corners of the box [-C0, C0]^d, C0 sqrt(d) from its centre. Both are left
    unchanged by the initial projection and are 2 x the accounted radius apart."""
    u = config.unlearning
    radius = init_ball_radius(u.init_model_clip, u.init_model_clip_type, theta.numel())
    if u.init_model_clip_type == "clip":
        norm = torch.linalg.vector_norm(theta)
        a = u.init_model_clip * (theta / norm if norm > 0 else torch.ones_like(theta) / theta.numel() ** 0.5)
    else:
        a = u.init_model_clip * torch.where(theta >= 0, 1.0, -1.0).to(theta.dtype)
    return a, -a, {"radius": radius, "distance": float(torch.linalg.vector_norm(2 * a))}


def trained_starts(config, data, device, chains: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """([chains, d] models trained on all the data, [chains, d] trained on the retain set alone,
    what they are): every chain of each world starts from its own training run."""
    import dataclasses

    from src.audit.chains import GROUP, chain_seeds
    from src.training.ensemble import pretrain_ensemble

    def train(split_data, world: str) -> torch.Tensor:
        seeds = chain_seeds(seed, f"trained-{world}", chains)
        return torch.cat([pretrain_ensemble(config, split_data, seeds[g:g + GROUP], device).theta.detach().cpu()
                          for g in range(0, chains, GROUP)])

    a = train(data, "A")
    b = train(dataclasses.replace(data, train=data.retain), "B")
    return a, b, {"world_A": f"{chains} models of the training recipe on all the data, one per chain",
                  "world_B": f"{chains} models of the training recipe on the retain set alone, one per chain"}

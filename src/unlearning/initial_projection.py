"""The first move of every certified algorithm: put the trained model into a known set.

`clip` projects onto the L2 ball of radius C0; `clamp` clips every coordinate to
[-C0, C0] (a box of L2 radius C0 sqrt(d), the data-independent bound we account with,
D9). Then optional Gaussian noise of std `init_sigma` (sigma0).
"""

from __future__ import annotations

import torch

from src.errors import DivergedError
from src.noise import project_l2_
from src.privacy.rounding import float32_at_most
from src.training.finite import non_finite_count


def initial_projection_(theta: torch.Tensor, config, context, log, sigma0: float | None = None) -> None:
    u = config.unlearning
    # A projection of NaN is NaN (norm NaN, scale 1): the certificate's starting set
    # would be a lie. Refuse instead of passing the weights through.
    bad = non_finite_count(theta)
    if bad:
        raise DivergedError(f"the model to unlearn has {bad} of {theta.numel()} weights NaN or infinite; the initial "
                            "projection cannot put it into a bounded set. Retrain or replace the pretrained model")
    with torch.no_grad():
        if u.init_model_clip_type == "clip":
            project_l2_(theta, u.init_model_clip)
        else:
            # the largest float32 <= C0: a bound rounded to nearest could lie above C0
            bound = float32_at_most(u.init_model_clip)
            theta.clamp_(-bound, bound)
        sigma0 = u.init_sigma if sigma0 is None else sigma0
        if sigma0:
            context.noise.add_fresh_(theta, sigma0)
            if non_finite_count(theta):
                raise DivergedError(f"unlearning.init_sigma: {sigma0} overflows the weights (float32) to infinity; "
                                    "use a smaller noise")
            log({"init_sigma": sigma0})

"""An outside method that takes noisy steps: the built-in Gradient Clipping's steps under
another name (its keys stay `unlearning.iteration:`). Named from outside the repository it
is empirical, like any outside method; the audit still measures it, chains in ensembles."""

from __future__ import annotations

from src.unlearning.gradient_clipping import GradientClipping


class NoisyClipping(GradientClipping):
    name = "noisy_clipping"
    section = None  # no keys of its own

"""Unlearning algorithms, one file each; importing this package registers them all."""

from src.unlearning import dp_sgd, gradient_clipping, model_clipping, output_perturbation, retrain  # noqa: F401
from src.unlearning import d2d, langevin  # noqa: F401  (the convex methods, issue #16)
# The empirical baselines (no certificate): src/unlearning/empirical.py.
from src.unlearning import (finetune, influence, l1_sparse, neggrad, neggrad_plus, random_label, salun,  # noqa: F401
                            scrub, sharp_minmax)
# RUM, the meta-algorithm over groups of the forget set (issue #24).
from src.unlearning import rum  # noqa: F401

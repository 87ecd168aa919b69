"""Unlearning algorithms, one file each; importing this package registers them all."""

from src.unlearning import dp_sgd, gradient_clipping, model_clipping, output_perturbation, retrain  # noqa: F401
from src.unlearning import d2d, langevin, pnsgd  # noqa: F401  (the convex methods, issues #16, #27)
# The empirical baselines (no certificate): src/unlearning/empirical.py.
from src.unlearning import (finetune, influence, l1_sparse, neggrad, neggrad_plus, random_label, salun,  # noqa: F401
                            scrub, sharp_minmax)

"""Unlearning algorithms, one file each; importing this package registers them all."""

from src.unlearning import dp_sgd, gradient_clipping, model_clipping, output_perturbation, retrain  # noqa: F401

"""Unlearning algorithms, one file each; importing this package registers them all."""

from src.unlearning import retrain  # noqa: F401

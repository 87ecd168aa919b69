"""get_datamodule(config): the registry of dataset names, and the splits on the device."""

from __future__ import annotations

import torch

from src.data.base_datamodule import DataModule, Split, SplitSizes
from src.data.forget_sets import build_split
from src.data.cifar_dataset import CIFAR10, CIFAR100
from src.data.convex_tasks import MNIST3v8, MNIST5k3v8, MNIST5kUnit, UnitFeatures
from src.data.feature_dataset import FeatureDataset
from src.data.file_dataset import ArrayFile, ImageFolder
from src.data.mnist_dataset import MNIST, KMNIST, FashionMNIST, MNIST5k
from src.data.worst_case import WorstCase
from src.errors import ConfigError

DATASETS = {
    "mnist": MNIST(),
    "mnist_5k": MNIST5k(),
    "cifar10": CIFAR10(),
    "cifar10_feature": FeatureDataset("cifar10", 10),
    "cifar100_feature": FeatureDataset("cifar100", 100),
    # unit-norm features for the convex models (Langevin unlearning)
    "mnist_3v8": MNIST3v8(),
    "mnist_5k_3v8": MNIST5k3v8(),
    "mnist_5k_unit": MNIST5kUnit(),
    "cifar10_feature_3v8": UnitFeatures(binary=True),
    "cifar10_feature_unit": UnitFeatures(binary=False),
    # the audit's synthetic worst case (src/data/worst_case.py)
    "worst_case": WorstCase(),
    # torchvision's files in MNIST's and CIFAR's formats, and the user's own files
    "fashion_mnist": FashionMNIST(),
    "kmnist": KMNIST(),
    "cifar100": CIFAR100(),
    "arrays": ArrayFile(),
    "image_folder": ImageFolder(),
}


def dataset_family(config):
    return DATASETS[config.dataset.name]


def input_shape(config) -> tuple[int, ...]:
    """dataset.input_shape when given (it must agree with the data), else the dataset's own."""
    family = dataset_family(config)
    given = config.dataset.input_shape
    if hasattr(family, "shape_for"):  # the user's files: the shape they hold
        own = family.shape_for(config)
        if given is not None and tuple(given) != tuple(own):
            raise ConfigError(f"dataset.input_shape: {list(given)} does not match {config.dataset.path}, whose "
                              f"inputs are {list(own)} (channels-last)")
        return tuple(own)
    # Feature files may have any width; their shape is checked against the files on load.
    if given is not None and family.fixed_shape and tuple(given) != tuple(family.input_shape):
        raise ConfigError(
            f"dataset.input_shape: {list(given)} does not match dataset '{config.dataset.name}', "
            f"whose inputs are {list(family.input_shape)} (channels-last)"
        )
    return tuple(given) if given is not None else tuple(family.input_shape)


def check_dataset_config(config) -> tuple[int, ...]:
    """Refuse a model/dataset mismatch before anything is loaded or written."""
    family = dataset_family(config)
    if family.num_classes is not None and config.model.n_classes != family.num_classes:
        raise ConfigError(
            f"model.n_classes: {config.model.n_classes} does not match dataset '{config.dataset.name}', "
            f"which has {family.num_classes} classes"
        )
    shape = input_shape(config)
    from src.models.model import ModelFactory

    ModelFactory.check_input_shape(config.model.name, shape)
    return shape


def check_split_sizes(config, sizes: SplitSizes) -> None:
    """Every split the run uses must hold examples (an empty forget set unlearns nothing,
    an empty retain set cannot be trained on)."""
    empty = [name for name in ("val", "forget", "retain") if getattr(sizes, name) == 0]
    if empty:
        ds = config.dataset
        raise ConfigError(
            f"dataset.val_split: {ds.val_split} and dataset.forget_split: {ds.forget_split} leave the "
            f"{' and '.join(empty)} set{'s' if len(empty) > 1 else ''} empty (of {sizes.pool} training examples: "
            f"val {sizes.val}, forget {sizes.forget}, retain {sizes.retain}); each must hold at least one example"
        )


def split_sizes(config) -> tuple[SplitSizes, bool]:
    """The sizes of the five splits without loading the data.

    Uses the files on disk when they are there (feature files can have any size), the
    official sizes otherwise; the flag says which.
    """
    family = dataset_family(config)
    present = family.files_present(config)
    if present and hasattr(family, "probe_sizes"):
        pool, test = family.probe_sizes(config)
    else:
        pool, test = family.official_sizes
    return SplitSizes.from_pool(pool, test, config.dataset.val_split, config.dataset.forget_split), present


def get_datamodule(config, device: torch.device | str) -> DataModule:
    raw = dataset_family(config).load(config, device)
    shape = input_shape(config)
    if tuple(raw.input_shape) != shape:
        raise ConfigError(
            f"dataset.input_shape: {list(shape)} does not match the data on disk, whose inputs are {list(raw.input_shape)}"
        )
    ds = config.dataset
    check_split_sizes(config, SplitSizes.from_pool(raw.train_y.shape[0], 0, ds.val_split, ds.forget_split))
    indices = build_split(config, raw)
    if len(indices.forget) == 0 or len(indices.val) == 0:
        raise ConfigError(
            f"dataset.forget_split / dataset.val_split: with {raw.train_y.shape[0]} training examples the "
            f"forget set has {len(indices.forget)} and the validation set {len(indices.val)} examples; both must be non-empty"
        )

    def take(idx):
        idx = idx.to(raw.train_x.device)
        return Split(raw.train_x[idx], raw.train_y[idx])

    return DataModule(
        train=take(indices.train), val=take(indices.val), forget=take(indices.forget), retain=take(indices.retain),
        test=Split(raw.test_x, raw.test_y), indices=indices, num_classes=raw.num_classes, input_shape=shape,
        augmentation=raw.augmentation,
    )

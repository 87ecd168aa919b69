"""The reference's feature files: frozen ImageNet ResNet-18 features of CIFAR-10 / CIFAR-100.

Format (what the reference's ``feature_extractor.py`` writes, and ours too)::

    torch.save({"features": float32 [N, 512], "labels": int64 [N]}, path)

at ``<dir>/cifar10_features/cifar10_{train,test}_features.pt`` and
``<dir>/cifar100_features/cifar100_{train,test}_features.pt``. The reference hard-codes
``<dir>`` to the working directory (its ``dataset.root`` is ignored for these datasets);
here it is the config key ``dataset.features_root`` (default ".").
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch

from src.errors import DataNotFoundError, UserError

FEATURE_DATASETS = ("cifar10", "cifar100")


def feature_file_path(features_root: str | Path, name: str, train: bool) -> Path:
    """``<features_root>/<name>_features/<name>_{train,test}_features.pt``."""
    if name not in FEATURE_DATASETS:
        raise UserError(f"unknown feature dataset {name!r}; expected one of {list(FEATURE_DATASETS)}")
    split = "train" if train else "test"
    return Path(features_root) / f"{name}_features" / f"{name}_{split}_features.pt"


def _how_to_make(path: Path) -> str:
    # <root>/<name>_features/<file>: name the dataset and the root the file belongs to.
    name = path.parent.name.removesuffix("_features") or "cifar10"
    if name not in FEATURE_DATASETS:
        name = "cifar10"
    root = path.parent.parent
    return (
        f"run `python feature_extractor.py --dataset {name} --root DATA --out {root}` "
        f"(DATA: the torchvision CIFAR folder) and set dataset.features_root to {root}"
    )


def load_feature_file(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and validate one feature file: ``features`` float32 [N, D], ``labels`` int64 [N]."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"feature file {path} not found; {_how_to_make(path)}")
    try:
        entry = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # unpickling errors of several kinds: all mean "not a feature file"
        raise UserError(f"{path}: not a readable torch.save file ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict) or not {"features", "labels"} <= set(entry):
        what = f"keys {sorted(map(str, entry))}" if isinstance(entry, dict) else f"a {type(entry).__name__}"
        raise UserError(f"{path}: holds {what}, expected a dict with 'features' and 'labels'")
    features, labels = entry["features"], entry["labels"]
    if not isinstance(features, torch.Tensor) or features.dtype != torch.float32 or features.dim() != 2:
        raise UserError(f"{path}: 'features' is {_describe(features)}, expected a float32 tensor [N, D]")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        raise UserError(f"{path}: 'labels' is {_describe(labels)}, expected an int64 tensor [N]")
    if len(labels) != len(features):
        raise UserError(f"{path}: {len(features)} feature rows but {len(labels)} labels")
    if len(labels) == 0:
        raise UserError(f"{path}: holds no examples")
    if labels.min() < 0:
        raise UserError(f"{path}: negative label {int(labels.min())}")
    if not torch.isfinite(features).all():
        raise UserError(f"{path}: 'features' contains NaN or infinite values")
    return features.contiguous(), labels.contiguous()


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {list(x.shape)}"
    return f"a {type(x).__name__}"


def save_feature_file(path: str | Path, features: torch.Tensor, labels: torch.Tensor) -> Path:
    """Write ``{"features", "labels"}`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    features = torch.as_tensor(features).detach().to("cpu", torch.float32).contiguous()
    labels = torch.as_tensor(labels).detach().to("cpu", torch.int64).contiguous()
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features {list(features.shape)} and labels {list(labels.shape)} do not form [N, D] / [N]")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "xb" (not mkstemp, whose 0600 mode would survive the rename).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            torch.save({"features": features, "labels": labels}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

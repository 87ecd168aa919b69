"""A dataset as arrays in one file: `.npz` (numpy.savez) or `.pt` (torch.save of a dict).

Four arrays, under these names::

    x_train  [N, d] features, [N, H, W] grey images or [N, H, W, C] images (channels-last)
    y_train  [N] integer labels in 0 .. model.n_classes - 1
    x_test   [M, ...] inputs of the same shape per example
    y_test   [M]

Inputs are uint8 (read as value / 255) or floating point (read as they are, in float32).
No statistic of the data is applied: a mean and standard deviation computed on the train
split would carry the forget set into every model, so normalise when writing the file.
Everything is checked before a run starts (shapes, dtypes, lengths, label range, NaN or
infinite inputs, the memory needed); each problem is one line naming the file and array.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from src.data.memory import load_bytes, require_fits
from src.errors import DataNotFoundError, UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")
SUFFIXES = (".npz", ".pt")


def _check_path(path: Path) -> None:
    if path.suffix not in SUFFIXES:
        raise UserError(f"dataset.path: {path} is neither a .npz nor a .pt file (dataset.name: arrays reads "
                        "numpy.savez or torch.save files holding x_train, y_train, x_test, y_test)")
    if not path.is_file():
        raise DataNotFoundError(f"dataset.path: {path} not found (a path relative to the config file's directory)")


def probe(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array, read from the file's headers without its data."""
    path = Path(path)
    _check_path(path)
    if path.suffix == ".npz":
        return _probe_npz(path)
    arrays = _torch_arrays(path, mmap=True)
    return {k: (tuple(v.shape), v.dtype) for k, v in arrays.items()}


def _probe_npz(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            _require_keys(path, [n.removesuffix(".npy") for n in names])
            out = {}
            for key in KEYS:
                with archive.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f"'{key}.npy' is in .npy format version {version}, expected 1.0 or 2.0")
                    shape, fortran, dtype = read_header(f)
                    out[key] = (tuple(shape), np.dtype(dtype))
            return out
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        raise UserError(f"dataset.path: {path} is not a readable .npz file ({type(e).__name__}: {e})") from None


def _torch_arrays(path: Path, mmap: bool) -> dict:
    import torch

    try:
        entry = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as e:
        if mmap and "mmap" in str(e):  # a file written with the legacy format: read it whole
            return _torch_arrays(path, mmap=False)
        raise UserError(f"dataset.path: {path} is not a readable torch.save file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # noqa: BLE001 - unpickling fails in many ways, all meaning "not this format"
        raise UserError(f"dataset.path: {path} is not a readable torch.save file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(entry, dict):
        raise UserError(f"dataset.path: {path} holds a {type(entry).__name__}, expected a dict of tensors "
                        f"{', '.join(KEYS)}")
    _require_keys(path, list(map(str, entry)))
    for key in KEYS:
        if not isinstance(entry[key], torch.Tensor):
            raise UserError(f"dataset.path: {path}: '{key}' is a {type(entry[key]).__name__}, expected a tensor")
    return {key: entry[key] for key in KEYS}


def _require_keys(path: Path, names: list[str]) -> None:
    missing = [k for k in KEYS if k not in names]
    if missing:
        raise UserError(f"dataset.path: {path} has no {', '.join(missing)} (it holds: {', '.join(names) or 'nothing'}); "
                        f"expected the arrays {', '.join(KEYS)}")


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_kind(dtype) -> str:
    """'u8' (uint8), 'float', 'int' or 'other', for numpy and torch dtypes alike."""
    text = str(dtype).removeprefix("torch.")
    if text == "uint8":
        return "u8"
    if text.startswith(("float", "bfloat")) or text in ("half", "double"):
        return "float"
    if text.startswith(("int", "uint", "long", "short")):
        return "int"
    return "other"


def check_layout(path: Path, info: dict, num_classes: int | None = None) -> tuple[int, ...]:
    """The per-example input shape (channels-last) after every check on shapes and dtypes;
    refuses a file whose arrays would not fit in memory."""
    (xs, xd), (ys, yd), (ts, td), (zs, zd) = (info[k] for k in KEYS)
    for key, shape, dtype in (("x_train", xs, xd), ("x_test", ts, td)):
        if len(shape) not in (2, 3, 4):
            raise UserError(f"dataset.path: {path}: '{key}' has shape {list(shape)}; expected [N, d], [N, H, W] or "
                            "[N, H, W, C]")
        if _dtype_kind(dtype) not in ("u8", "float"):
            raise UserError(f"dataset.path: {path}: '{key}' is {_name(dtype)}; expected uint8 (0..255) or floating point")
        if shape[0] == 0:
            raise UserError(f"dataset.path: {path}: '{key}' holds no examples")
    for key, shape, dtype, x_key, x_shape in (("y_train", ys, yd, "x_train", xs), ("y_test", zs, zd, "x_test", ts)):
        if _dtype_kind(dtype) not in ("int", "u8") or len(shape) != 1:
            raise UserError(f"dataset.path: {path}: '{key}' is {_name(dtype)} of shape {list(shape)}; expected integer "
                            "labels of shape [N]")
        if shape[0] != x_shape[0]:
            raise UserError(f"dataset.path: {path}: '{key}' has {shape[0]} labels but '{x_key}' has {x_shape[0]} "
                            "examples")
    if tuple(xs[1:]) != tuple(ts[1:]):
        raise UserError(f"dataset.path: {path}: 'x_train' examples are {list(xs[1:])} but 'x_test' examples are "
                        f"{list(ts[1:])}; both must have the same shape")
    if len(xs) == 4 and xs[1] in (1, 3) and xs[3] not in (1, 3, 4):
        raise UserError(f"dataset.path: {path}: 'x_train' has shape {list(xs)}, which looks channels-first; write "
                        f"images channels-last, [N, H, W, C] (numpy's x.transpose(0, 2, 3, 1))")
    shape = tuple(int(d) for d in xs[1:]) + ((1,) if len(xs) == 3 else ())
    elements = int(np.prod(xs)) + int(np.prod(ts))
    stored = sum(int(np.prod(s)) * _itemsize(d) for s, d in info.values())
    require_fits(load_bytes(stored, elements), f"dataset.path: {path}")
    return shape


def _itemsize(dtype) -> int:
    return dtype.itemsize  # numpy and torch dtypes both have it


def load(path: str | Path, num_classes: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray],
                                                      tuple[int, ...]]:
    """((x_train float32, y_train int64), (x_test, y_test), input shape), every check made."""
    path = Path(path)
    info = probe(path)
    shape = check_layout(path, info, num_classes)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in KEYS}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise UserError(f"dataset.path: {path} cannot be read ({type(e).__name__}: {e})") from None
    else:
        arrays = {k: v.numpy() for k, v in _torch_arrays(path, mmap=False).items()}
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        out.append((_inputs(path, f"x_{split}", x), _labels(path, f"y_{split}", y, num_classes)))
    return out[0], out[1], shape


def _inputs(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
        raise UserError(f"dataset.path: {path}: '{key}' has {int(bad.sum())} NaN or infinite values (or values beyond "
                        f"float32), the first in example {first}")
    return x


def _labels(path: Path, key: str, y: np.ndarray, num_classes: int) -> np.ndarray:
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        at = int(np.argmax(y == bad))
        raise UserError(f"dataset.path: {path}: '{key}' holds label {bad} (example {at}), out of range for "
                        f"model.n_classes = {num_classes} (labels 0..{num_classes - 1})")
    return y


def check_labels(path: str | Path, num_classes: int) -> None:
    """Labels in range, read before a run starts (they are small)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            labels = {k: data[k] for k in ("y_train", "y_test")}
    else:
        labels = {k: v.numpy() for k, v in _torch_arrays(path, mmap=True).items() if k.startswith("y_")}
    for key, y in labels.items():
        _labels(path, key, y, num_classes)

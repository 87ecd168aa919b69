"""CIFAR-10 / CIFAR-100 as torchvision stores them on disk (the "python version" pickles).

Layout (what ``torchvision.datasets.CIFAR10/CIFAR100(root, download=True)`` leaves behind)::

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta

Each batch is a pickled dict (written by Python 2, so its keys load as ``str`` with
``encoding="latin1"``) with ``data``: uint8 [N, 3072], one row per image, the 1,024 red
then green then blue values in row-major order (CHW), and ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100) as a list of ints. Images are returned HWC in torchvision's
index order (data_batch_1 .. 5 concatenated).

Official files are recognised by their md5 (torchvision's ``train_list`` / ``test_list``);
other files are read with a warning, and since a pickle can run code, through an
unpickler that only admits the numpy globals an array needs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from src.data.mnist_files import check_official_md5, try_torchvision_download
from src.errors import DataNotFoundError, UserError

# Normalisation constants of the original code, used by the image datasets and
# by feature_extractor.py. The CIFAR-10 std triple is the widespread incorrect one (the true
# per-channel std is about (0.247, 0.243, 0.261)); it is kept on purpose, for faithfulness
# to the reference's models and features (D28).
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}

# name -> (folder, archive URL, train files, test files, label key, number of classes).
# md5s from torchvision.datasets.CIFAR10/CIFAR100.train_list / test_list (torchvision 0.29.1;
# tests/test_data_files.py checks that they still agree).
_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        [
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ],
        [("test_batch", "40351d587109b95175f43aff81a1287e")],
        "labels",
        10,
    ),
    "cifar100": (
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        [("train", "16019d7e3df5f24257cddd939b257f8d")],
        [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
        "fine_labels",
        100,
    ),
}

_TORCHVISION_CLASS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}

# The globals a pickled numpy array needs (Python 2 and 3, numpy 1 and 2); nothing else is
# admitted from a file that is not the official release.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UserError(
            f"{self._path}: the pickle refers to {module}.{name}; a CIFAR batch holds only numpy "
            "arrays, lists and strings, so it is not read (it could run code)"
        )


def _read_batch(path: Path, official_md5: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    official = check_official_md5(path, raw, official_md5)
    try:
        if official:
            entry = pickle.loads(raw, encoding="latin1")
        else:
            entry = _ArrayOnlyUnpickler(io.BytesIO(raw), path).load()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise UserError(f"{path}: holds a {type(entry).__name__}, expected a dict with 'data' and '{label_key}'")
    # Python 2 str keys load as str under latin1; bytes keys (a Python 3 writer) as bytes.
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    for key in ("data", label_key):
        if key not in entry:
            raise UserError(f"{path}: no key '{key}' (keys: {sorted(map(str, entry))})")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: 'data' is a {what}, expected a uint8 array of shape [N, 3072]")
    try:
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}: '{label_key}' is not a list of integers") from None
    if labels.shape != (len(data),):
        raise UserError(f"{path}: '{label_key}' has shape {labels.shape}, expected ({len(data)},) like 'data'")
    return data, labels


def _missing_message(name: str, root: str | Path, folder: Path, missing: list[str], error: str | None) -> str:
    _, url, *_ = _LAYOUT[name]
    cls = _TORCHVISION_CLASS[name]
    return (
        f"{name} files not found under {folder} (missing: {', '.join(missing)}); the download attempt "
        f"failed ({error}). Download {url} and extract it into {root} (it creates {folder.name}/), "
        f"or on a machine with network run "
        f"python -c 'import torchvision; torchvision.datasets.{cls}(\"{root}\", download=True)' "
        f"and copy the {folder.name}/ folder it creates into {root} on this machine"
    )


def load_cifar(root: str | Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The official train (50,000) or test (10,000) split of ``name`` ("cifar10" or "cifar100").

    Returns ``images`` uint8 [N, 32, 32, 3] (HWC) and ``labels`` int64 [N] (the fine labels
    for CIFAR-100), in torchvision's index order.
    """
    if name not in _LAYOUT:
        raise UserError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(_LAYOUT)}")
    folder_name, _, train_files, test_files, label_key, n_classes = _LAYOUT[name]
    folder = Path(root) / folder_name
    files = train_files if train else test_files
    missing = [f for f, _ in files if not (folder / f).is_file()]
    if missing:
        import torchvision  # only needed here: importing it costs about a second

        cls = getattr(torchvision.datasets, _TORCHVISION_CLASS[name])
        error = try_torchvision_download(lambda: cls(str(root), train=train, download=True))
        missing = [f for f, _ in files if not (folder / f).is_file()]
        if missing:
            raise DataNotFoundError(_missing_message(name, root, folder, missing, error or "it did not produce them"))
    parts = []
    for f, md5 in files:  # a loop, not a comprehension: the md5 warning's stacklevel counts frames
        parts.append(_read_batch(folder / f, md5, label_key))
    data = np.concatenate([d for d, _ in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([l for _, l in parts]) if len(parts) > 1 else parts[0][1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise UserError(f"{folder}: {label_key} value {bad} out of range, expected 0..{n_classes - 1}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels

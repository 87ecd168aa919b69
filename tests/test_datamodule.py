"""Splits identical to the reference's, data on the device, batched augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from src.config import load_config
from src.data.base_datamodule import SplitSizes, split_indices
from src.data.batches import CifarAugmentation, MnistAugmentation, make_generator, poisson_batches, shuffled_batches
from src.data.datamodule import get_datamodule, split_sizes
from src.entropy import SeededRandomness
from src.errors import ConfigError
from src.seeds import derive_seed
from tests.conftest import QUICKSTART
from tests.datafiles import write_cifar10_pickles, write_feature_files, write_mnist_idx


@pytest.mark.parametrize("pool, val_split, forget_split, seed", [(1000, 0.1, 0.1, 142), (777, 0.25, 0.005, 230),
                                                                 (60, 0.1, 0.3, 8)])
def test_split_indices_equal_an_independent_computation(pool, val_split, forget_split, seed):
    """torch.utils.data.random_split twice with one generator == two randperms of it."""
    got = split_indices(pool, val_split, forget_split, seed)
    val = int(pool * val_split)
    train = pool - val
    forget = int(train * forget_split)
    generator = torch.Generator().manual_seed(seed)
    first = torch.randperm(pool, generator=generator)
    second = torch.randperm(train, generator=generator)
    train_idx = first[:train]
    assert torch.equal(got.train, train_idx)
    assert torch.equal(got.val, first[train:])
    assert torch.equal(got.retain, train_idx[second[:train - forget]])
    assert torch.equal(got.forget, train_idx[second[train - forget:]])
    # a partition of the pool
    everything = torch.cat([got.val, got.retain, got.forget]).sort().values
    assert torch.equal(everything, torch.arange(pool))


def test_reference_split_sizes():
    assert SplitSizes.from_pool(60000, 10000, 0.1, 0.1) == SplitSizes(60000, 10000, 6000, 54000, 5400, 48600)
    assert SplitSizes.from_pool(50000, 10000, 0.1, 0.005) == SplitSizes(50000, 10000, 5000, 45000, 225, 44775)
    assert SplitSizes.from_pool(50000, 10000, 0.1, 0.1).retain == 40500
    assert math.ceil(40500 / 128) == 317 and math.ceil(48600 / 128) == 380


def test_mnist_5k_datamodule_on_the_device():
    config = load_config(QUICKSTART)
    data = get_datamodule(config, "cpu")
    assert data.sizes == SplitSizes(4000, 1000, 400, 3600, 360, 3240)
    assert split_sizes(config) == (data.sizes, True)
    assert data.train.x.shape == (3600, 1, 28, 28) and data.train.x.dtype == torch.float32
    assert data.test.y.bincount().tolist() == [100] * 10
    # normalised with MNIST's constants: a black pixel is -0.1307/0.3081
    assert data.train.x.min().item() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)
    # the split is a function of dataset.seed only: the original's procedure on the raw seed,
    # so the index sets are the original's (the other streams derive their seeds by purpose)
    again = get_datamodule(load_config(QUICKSTART, ["global_seed=5"]), "cpu")
    assert torch.equal(again.indices.forget, data.indices.forget)
    other = get_datamodule(load_config(QUICKSTART, ["dataset.seed=230"]), "cpu")
    assert not torch.equal(other.indices.forget, data.indices.forget)
    seed = config.dataset.seed
    assert torch.equal(data.indices.forget, split_indices(4000, 0.1, 0.1, seed).forget)
    assert not torch.equal(data.indices.forget, split_indices(4000, 0.1, 0.1, derive_seed(seed, "split")).forget)


def test_mnist_idx_files_through_the_mnist_dataset(tmp_path):
    write_mnist_idx(tmp_path, n_train=300, n_test=50, seed=0)
    config = load_config(QUICKSTART, ["dataset.name=mnist", f"dataset.root={tmp_path}"])
    with pytest.warns(UserWarning, match="not the official"):
        data = get_datamodule(config, "cpu")
    assert data.sizes == SplitSizes.from_pool(300, 50, 0.1, 0.1)
    assert data.augmentation is not None


def test_cifar_pickles_through_the_cifar10_dataset(tmp_path):
    write_cifar10_pickles(tmp_path, n_train=100, n_test=20, seed=0)
    config = load_config(QUICKSTART, ["dataset.name=cifar10", f"dataset.root={tmp_path}",
                                      "dataset.input_shape=[32, 32, 3]", "model.name=tiny_net_cifar"])
    with pytest.warns(UserWarning):
        data = get_datamodule(config, "cpu")
    assert data.train.x.shape == (90, 3, 32, 32) and len(data.test) == 20


def test_feature_files_through_the_feature_dataset(tmp_path):
    write_feature_files(tmp_path, "cifar100", n_train=200, n_test=40, n_classes=100)
    config = load_config(QUICKSTART, ["dataset.name=cifar100_feature", f"dataset.features_root={tmp_path}",
                                      "dataset.input_shape=[512]", "model.name=three_layer_net", "model.n_classes=100"])
    sizes, present = split_sizes(config)
    assert present and sizes == SplitSizes.from_pool(200, 40, 0.1, 0.1)
    data = get_datamodule(config, "cpu")
    assert data.train.x.shape == (180, 512) and data.augmentation is None


def test_dataset_and_model_must_agree():
    with pytest.raises(ConfigError, match="model.n_classes: 100 does not match dataset 'mnist_5k'"):
        from src.runner import make_plan

        make_plan(load_config(QUICKSTART, ["model.n_classes=100"]))
    with pytest.raises(ConfigError, match="dataset.input_shape"):
        make_plan(load_config(QUICKSTART, ["dataset.input_shape=[32, 32, 3]"]))


def test_batches_are_a_seeded_permutation():
    a = shuffled_batches(300, 128, make_generator(1, "cpu"), "cpu")
    b = shuffled_batches(300, 128, make_generator(1, "cpu"), "cpu")
    assert [len(x) for x in a] == [128, 128, 44]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(torch.cat(a).sort().values, torch.arange(300))


def test_poisson_batches_have_the_right_mean_size():
    batches = poisson_batches(10000, 0.0128, 400, SeededRandomness(make_generator(0, "cpu")), "cpu")
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float)
    assert sizes.mean().item() == pytest.approx(128, abs=3 * math.sqrt(128 / 400) + 0.5)
    assert sizes.var().item() == pytest.approx(128 * (1 - 0.0128), rel=0.2)  # binomial variance


def test_poisson_memberships_compare_float64_uniforms_with_the_rate():
    # a float32 uniform (2^-24 grid) joins with a probability up to 2^-24 above the rate; the
    # memberships are float64 draws < rate, exactly
    rate = 0.0128
    batches = poisson_batches(5000, rate, 3, SeededRandomness(make_generator(7, "cpu")), "cpu")
    generator = make_generator(7, "cpu")
    for batch in batches:
        expected = (torch.rand(5000, generator=generator, dtype=torch.float64) < rate).nonzero().squeeze(1)
        assert torch.equal(batch, expected)


def test_mnist_augmentation_rotates_and_flips_with_black_fill():
    fill = torch.tensor([-0.5])
    augment = MnistAugmentation(fill, degrees=10)
    x = torch.zeros(512, 1, 28, 28)
    x[:, :, 10:18, 4:8] = 1.0  # a bar left of the centre
    out = augment(x, make_generator(0, "cpu"))
    assert out.shape == x.shape
    left = out[:, 0, :, :14].gt(0.5).sum((1, 2))
    right = out[:, 0, :, 14:].gt(0.5).sum((1, 2))
    flipped = right > left
    assert 0.4 < flipped.float().mean().item() < 0.6  # p = 0.5
    # rotation by at most 10 degrees keeps the bar's area roughly; corners fill with black
    assert out[:, 0, 0, 0].eq(-0.5).float().mean() > 0.2
    assert (out.gt(0.5).sum((1, 2, 3)).float() / 32).sub(1).abs().max() < 0.35


def test_cifar_augmentation_is_a_padded_crop_and_flip():
    fill = torch.tensor([-1.0, -2.0, -3.0])
    augment = CifarAugmentation(fill)
    x = torch.arange(32 * 32, dtype=torch.float).view(1, 1, 32, 32).repeat(256, 3, 1, 1)
    out = augment(x, make_generator(0, "cpu"))
    assert out.shape == x.shape
    for image in out[:20]:
        # every output is a 32x32 window of the padded (and possibly flipped) image
        inside = image[0] >= 0
        rows, cols = inside.any(1).sum().item(), inside.any(0).sum().item()
        assert 24 <= rows <= 32 and 24 <= cols <= 32
        assert torch.all(image[1][~inside] == -2.0)

"""Forget sets shared by every method: the reference's random split unchanged, class and
memorization-grouped forget sets, memorization scores from a file or estimated by subsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.config import load_config, run_id
from src.data.base_datamodule import split_indices
from src.data.datamodule import get_datamodule
from src.data.forget_sets import build_split, memorization_group
from src.data.mnist_dataset import MNIST5k
from src.errors import ConfigError, UserError
from src.evaluation.memorization import subsample_scores
from tests.conftest import QUICKSTART

POOL = 4000  # mnist_5k's official train split


@pytest.fixture(scope="module")
def raw():
    return MNIST5k.load(load_config(QUICKSTART), "cpu")


def config(*overrides, tmp=None):
    extra = [f"checkpoints_dir={tmp}"] if tmp is not None else []
    return load_config(QUICKSTART, [*extra, *overrides])


def test_random_is_the_reference_split_bit_for_bit(raw):
    default = config()
    reference = split_indices(POOL, 0.1, 0.1, 142)
    for c in (default, config("dataset.forget.strategy=random")):
        got = build_split(c, raw)
        for name in ("train", "val", "retain", "forget"):
            assert torch.equal(getattr(got, name), getattr(reference, name)), name
    # and the default keeps every existing run id: the new keys are not part of it when unused
    assert "forget" not in default.to_dict()["dataset"] and "evaluation" not in default.to_dict()
    assert run_id(default) == run_id(config("dataset.forget.strategy=random"))


def test_class_forget_set_is_every_train_example_of_the_classes(raw):
    got = build_split(config("dataset.forget.strategy=class", "dataset.forget.classes=[3, 7]"), raw)
    reference = split_indices(POOL, 0.1, 0.1, 142)
    assert torch.equal(got.val, reference.val) and torch.equal(got.train, reference.train)
    labels = raw.train_y
    assert set(labels[got.forget].unique().tolist()) == {3, 7}
    assert not set(labels[got.retain].unique().tolist()) & {3, 7}
    assert len(got.forget) == int(np.isin(labels[reference.train].numpy(), [3, 7]).sum())
    assert sorted(torch.cat([got.forget, got.retain]).tolist()) == sorted(reference.train.tolist())
    with pytest.raises(ConfigError, match=r"dataset.forget.classes: \[12\] has \[12\]"):
        build_split(config("dataset.forget.strategy=class", "dataset.forget.classes=[12]"), raw)
    with pytest.raises(ConfigError, match="needs classes"):
        config("dataset.forget.strategy=class")


def test_memorization_groups_are_rums():
    scores = np.array([0.9, 0.1, 0.5, 0.45, 0.8, 0.0, 0.55, 0.2, 0.95, 0.3, 0.35, 0.05])
    assert memorization_group(scores, 3, "high").tolist() == [0, 4, 8]
    assert memorization_group(scores, 3, "low").tolist() == [1, 5, 11]
    assert memorization_group(scores, 3, "mid").tolist() == [2, 3, 6]  # |s - 0.5| = 0, 0.05, 0.05
    median = float(np.median(scores))  # 0.4: 0.35 and 0.45 (0.05 away), then 0.5 (0.1, before 0.3)
    assert median == pytest.approx(0.4)
    assert memorization_group(scores, 3, "mid", "closest_to_median").tolist() == [2, 3, 10]
    # mix: n // 3 of high, n // 3 of mid not yet taken, the lowest of the rest
    mix = memorization_group(scores, 6, "mix")
    assert mix.tolist() == sorted([8, 0, 2, 3, 5, 11])
    with pytest.raises(ConfigError):
        memorization_group(scores, 13, "high")


def test_memorization_forget_set_from_a_file(raw, tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 1.0, POOL)
    np.savez(tmp_path / "mem.npz", tr_mem=scores)
    base = ["dataset.forget.strategy=memorization", "dataset.forget.memorization.source=file",
            f"dataset.forget.memorization.path={tmp_path / 'mem.npz'}", "dataset.forget.memorization.key=tr_mem"]
    reference = split_indices(POOL, 0.1, 0.1, 142)
    train_scores = scores[reference.train.numpy()]
    for group in ("high", "low", "mid", "mix"):
        got = build_split(config(*base, f"dataset.forget.memorization.group={group}"), raw)
        assert torch.equal(got.val, reference.val) and len(got.forget) == len(reference.forget) == 360
        assert not set(got.forget.tolist()) & set(got.retain.tolist())
        forget_scores = scores[got.forget.numpy()]
        if group == "high":
            assert forget_scores.min() >= np.sort(train_scores)[-360]
        if group == "low":
            assert forget_scores.max() <= np.sort(train_scores)[359]
        if group == "mid":
            assert np.abs(forget_scores - 0.5).max() <= np.sort(np.abs(train_scores - 0.5))[359]
    # the same scores in the split's own order give the same forget set
    np.save(tmp_path / "post.npy", train_scores)
    post = config("dataset.forget.strategy=memorization", "dataset.forget.memorization.source=file",
                  f"dataset.forget.memorization.path={tmp_path / 'post.npy'}",
                  "dataset.forget.memorization.index_space=post_split")
    assert torch.equal(build_split(post, raw).forget, build_split(config(*base), raw).forget)


def test_memorization_file_problems_are_named(raw, tmp_path):
    base = ["dataset.forget.strategy=memorization", "dataset.forget.memorization.source=file"]
    with pytest.raises(ConfigError, match="needs memorization.path"):
        config(*base)
    with pytest.raises(UserError, match=r"memorization.path: '.*nope.npz' does not exist"):
        build_split(config(*base, f"dataset.forget.memorization.path={tmp_path / 'nope.npz'}"), raw)
    np.savez(tmp_path / "m.npz", other=np.zeros(POOL))
    with pytest.raises(UserError, match=r"memorization.key: 'memorization' is not in .*\['other'\]"):
        build_split(config(*base, f"dataset.forget.memorization.path={tmp_path / 'm.npz'}"), raw)
    np.save(tmp_path / "short.npy", np.zeros(100))
    with pytest.raises(UserError, match=r"shape \[100\]; index_space 'original' needs one score per example, 4000"):
        build_split(config(*base, f"dataset.forget.memorization.path={tmp_path / 'short.npy'}"), raw)


def test_subsampled_memorization_finds_mislabelled_examples(raw):
    # 300 digits, 20 of them relabelled at random: a model fits a wrong label only if it saw
    # it, the definition of memorization; correct digits generalise (score near 0).
    x, y = raw.train_x[:300], raw.train_y[:300].clone()
    generator = torch.Generator().manual_seed(0)
    flipped = torch.randperm(300, generator=generator)[:20]
    y[flipped] = (y[flipped] + torch.randint(1, 10, (20,), generator=generator)) % 10
    training = config("training.max_lr=0.1").training
    scores = subsample_scores("tinier_net", 10, (28, 28, 1), x, y, None, training, 32, 8, 0.5, 30, 3, "cpu")
    is_flipped = np.zeros(300, dtype=bool)
    is_flipped[flipped.numpy()] = True
    assert scores[is_flipped].mean() > 0.4 and abs(scores[~is_flipped].mean()) < 0.05
    assert is_flipped[np.argsort(-scores)[:20]].sum() >= 15


def test_estimated_scores_are_cached_per_dataset_seed_and_shared(raw, tmp_path):
    overrides = ["dataset.forget.strategy=memorization", "dataset.forget.memorization.subsample.n_models=4",
                 "dataset.forget.memorization.subsample.epochs=1"]
    first = build_split(config(*overrides, tmp=tmp_path), raw)
    cached = list((tmp_path / "memorization").glob("*.npz"))
    assert len(cached) == 1
    # another run of the same data seed (another method, another global seed) reuses them
    again = build_split(config(*overrides, "global_seed=99", "unlearning.algorithm=retrain", tmp=tmp_path), raw)
    assert torch.equal(first.forget, again.forget) and len(list((tmp_path / "memorization").glob("*.npz"))) == 1
    other_seed = build_split(config(*overrides, "dataset.seed=7", tmp=tmp_path), raw)
    assert len(list((tmp_path / "memorization").glob("*.npz"))) == 2
    assert not torch.equal(other_seed.val, first.val)


def test_every_split_is_on_the_datamodule(tmp_path):
    c = config("dataset.forget.strategy=class", "dataset.forget.classes=[0]", tmp=tmp_path)
    data = get_datamodule(c, "cpu")
    assert (data.forget.y == 0).all() and (data.retain.y != 0).all()
    assert len(data.forget) + len(data.retain) == len(data.train) == 3600

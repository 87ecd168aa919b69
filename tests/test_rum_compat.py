"""The `compat:` switches that reproduce the RUM / sharp-unlearn code where running it side by
side showed a difference (docs/differences.md#rum-code): each against a hand computation of
what the original does, and the default unchanged."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from src.config import SAMConfig, load_config
from src.data.base_datamodule import Split
from src.data.batches import make_generator
from src.data.datamodule import get_datamodule
from src.training.optim import ScheduledOptimizer, make_optimizer, make_schedule
from src.training.sam import sam_gradient
from src.training.trainer import build_model
from src.unlearning.empirical import Batches
from src.unlearning.random_label import relabels
from src.unlearning.saliency import forget_saliency
from tests.conftest import QUICKSTART


def test_the_saliency_summed_while_sgd_ascends_is_the_originals_and_the_model_is_put_back():
    config = load_config(QUICKSTART, ["unlearning.max_lr=0.5", "unlearning.weight_decay=0"])
    data = get_datamodule(config, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    forget = Split(data.forget.x[:200], data.forget.y[:200])
    theta0 = model.theta.detach().clone()
    u = config.unlearning
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, u, 0.0), make_schedule(u, 2))
    got = forget_saliency(model, forget, 128, optimizer)
    assert torch.equal(model.theta, theta0)
    # by hand: g1 at theta0, one SGD step on -CE (theta0 + lr g1), g2 there; |g1 + g2|
    def grad(theta, x, y):
        theta = theta.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(model(x, theta), y), theta)[0]

    g1 = grad(theta0, forget.x[:128], forget.y[:128])
    g2 = grad(theta0 + 0.5 * g1, forget.x[128:], forget.y[128:])
    torch.testing.assert_close(got, (g1 + g2).abs(), rtol=1e-5, atol=1e-7)
    fixed = forget_saliency(model, forget, 128)
    torch.testing.assert_close(fixed, (g1 + grad(theta0, forget.x[128:], forget.y[128:])).abs(), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got, fixed)


def test_masking_only_the_perturbed_gradient_moves_frozen_coordinates_by_2g_in_the_max_step():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    theta = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.3]))

    def loss_fn():
        loss = (a * theta ** 4).sum()
        return loss, None

    mask = torch.tensor([1.0, 1.0, 0.0, 0.0])  # 1 = may move
    g = 4 * a * theta.detach() ** 3
    sam = SAMConfig(rho=0.1, adaptive=False, lamb=1.0, sign="max")
    _, _, combined = sam_gradient(loss_fn, theta, sam)
    _, _, upstream = sam_gradient(loss_fn, theta, sam, adv_mask=mask)
    torch.testing.assert_close(upstream[2:], 2 * g[2:])  # (1 + lamb) g where frozen
    torch.testing.assert_close(upstream[:2], combined[:2])  # the moving ones unchanged
    # min step, lamb 1: the frozen coordinates get (1 - 1) g = 0, as masking the result does
    _, _, minimum = sam_gradient(loss_fn, theta, SAMConfig(rho=0.1, lamb=1.0, sign="min"), adv_mask=mask)
    torch.testing.assert_close(minimum[2:], torch.zeros(2))


def test_cached_forget_batches_repeat_one_permutation_and_the_default_reshuffles():
    split = Split(torch.arange(10.0)[:, None], torch.arange(10))

    def first_cycles(cached):
        batches = Batches(split, 4, None, make_generator(0, "cpu")).cycle(cached=cached)
        return [next(batches)[1].tolist() for _ in range(6)]  # two passes of 3 batches

    cached, fresh = first_cycles(True), first_cycles(False)
    assert cached[:3] == cached[3:] and sorted(sum(cached[:3], [])) == list(range(10))
    assert fresh[:3] == cached[:3] and fresh[3:] != fresh[:3]


def test_upstream_random_labels_relabel_only_cifar10():
    assert relabels(load_config(QUICKSTART))
    assert not relabels(load_config(QUICKSTART, ["compat.random_labels=upstream"]))
    cifar = load_config(QUICKSTART, ["compat.random_labels=upstream", "dataset.name=cifar10",
                                     "model.name=tiny_net_cifar", "dataset.input_shape=[32, 32, 3]"])
    features = load_config(QUICKSTART, ["compat.random_labels=upstream", "dataset.name=cifar100_feature",
                                        "model.name=three_layer_net", "model.n_classes=100",
                                        "dataset.input_shape=[512]"])
    assert relabels(cifar) and not relabels(features)


def test_upstream_random_labels_on_digits_train_on_the_true_labels(tmp_path, session_checkpoints):
    from src.runner import attach_run, make_plan

    config = load_config(QUICKSTART, ["unlearning.algorithm=random_label", "compat.random_labels=upstream",
                                      "unlearning.max_lr=0.01", "unlearning.weight_decay=0.0005"])
    data = get_datamodule(config, "cpu")
    plan = make_plan(config)
    algorithm = attach_run(plan, "cpu", {}, data=data)
    algorithm.prepare(build_model(config, data.input_shape, "cpu"), lambda row: None)
    assert torch.equal(algorithm._labels(0), data.forget.y)
    default = make_plan(load_config(QUICKSTART, ["unlearning.algorithm=random_label"]))
    relabelled = attach_run(default, "cpu", {}, data=data)
    assert (relabelled._labels(0) != data.forget.y).float().mean() > 0.8


def test_the_switches_at_their_defaults_leave_every_run_id_as_it_was():
    from src.config import run_id

    plain = load_config(QUICKSTART)
    assert set(plain.to_dict()["compat"]) == {"reuse_noise", "renyi_conversion", "pabi_lambda0", "augment_eval",
                                              "group_privacy", "dp_sgd_sampling"}
    switched = load_config(QUICKSTART, ["compat.neggrad_plus_forget_order=cached"])
    assert switched.to_dict()["compat"]["neggrad_plus_forget_order"] == "cached" and run_id(switched) != run_id(plain)

"""RUM's memorization proxies and the entanglement score: the learning events recorded during
pretraining against a hand computation of the same run, the symmetric KL and the input-space
curvature against closed forms, the entanglement score on points with a known answer, and
RUM grouping by a proxy and by entanglement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy
from torch.nn import functional as F

from src.config import load_config
from src.data.batches import make_generator, shuffled_batches
from src.data.datamodule import get_datamodule
from src.evaluation.entanglement import (classwise_entanglement, entanglement_score, example_distances, normalised,
                                         penultimate_embeddings)
from src.evaluation.proxies import LearningEvents, input_curvature, symmetric_kl
from src.seeds import derive_seed
from src.training.trainer import Console, build_model, pretrain
from tests.conftest import QUICKSTART


# -- learning events -----------------------------------------------------------------------------


def test_learning_events_are_the_hand_computed_means_of_the_training_steps_outputs():
    config = load_config(QUICKSTART, ["training.epochs=2", "training.lr_schedule=constant", "training.max_lr=0.05",
                                      "training.weight_decay=0", "dataset.val_split=0.5", "dataset.forget_split=0.5"])
    data = get_datamodule(config, "cpu")
    n, b = len(data.train), config.dataset.batch_size
    events = LearningEvents(n, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    pretrain(config, data, model, lambda row: None, Console(quiet=True), events=events)
    recorded = events.means()

    # The same run by hand: the same random stream, plain SGD written out, and each
    # example's softmax output noted before the update that trains on it.
    hand = build_model(config, data.input_shape, "cpu")
    generator = make_generator(derive_seed(config.global_seed, "pretrain-data"), "cpu")
    outputs = [[] for _ in range(n)]
    for _ in range(config.training.epochs):
        for idx in shuffled_batches(n, b, generator, "cpu"):
            choice = data.augmentation.draw(idx.shape[0], generator)
            x, y = data.augmentation.apply(data.train.x[idx], choice), data.train.y[idx]
            with torch.enable_grad():
                logits = hand(x)
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), hand.theta)
            for i, p, label in zip(idx.tolist(), torch.softmax(logits.detach().double(), 1).numpy(), y.tolist()):
                outputs[i].append((p, label))
            with torch.no_grad():
                hand.theta.sub_(0.05 * grad)
    assert torch.equal(hand.theta, model.theta)  # the replay is the run
    assert all(len(o) == 2 for o in outputs) and np.all(recorded["epochs_seen"] == 2)
    expected = {
        "confidence": [np.mean([p[y] for p, y in o]) for o in outputs],
        "max_conf": [np.mean([p.max() for p, _ in o]) for o in outputs],
        "entropy": [np.mean([np.sum(p * np.log(p)) for p, _ in o]) for o in outputs],
        "bi_acc": [np.mean([float(p.argmax() == y) for p, y in o]) for o in outputs],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(recorded[name], values, rtol=0, atol=1e-9, err_msg=name)
    assert 0 < np.mean(recorded["bi_acc"]) < 1  # the run learnt something, not everything


def test_the_pretrained_cache_keeps_the_learning_events(tmp_path):
    from src.config import pretrained_key
    from src.evaluation.proxies import EVENTS_FILE, load_learning_events, proxy_scores
    from src.runner import ensure_pretrained

    config = load_config(QUICKSTART, ["training.epochs=1", f"checkpoints_dir={tmp_path}"])
    path = ensure_pretrained(config, "cpu", Console(quiet=True))
    assert (path.parent / EVENTS_FILE).is_file() and pretrained_key(config) in str(path)
    data = get_datamodule(config, "cpu")
    events = load_learning_events(config, data.indices.train)
    assert np.all(events["epochs_seen"] == 1)
    # the proxy is oriented as memorization: high confidence is low memorization
    np.testing.assert_array_equal(proxy_scores("confidence", config, data, None), -events["confidence"])


# -- hold-out retraining and curvature ------------------------------------------------------------


def test_symmetric_kl_is_half_the_two_kls():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    got = symmetric_kl(p, q)
    want = [0.5 * (entropy(a, b) + entropy(b, a)) for a, b in zip(p, q)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(symmetric_kl(q, p), got, rtol=1e-12)
    np.testing.assert_allclose(symmetric_kl(p, p), 0, atol=1e-15)
    # two coins: (a - b)(log a - log b + log(1 - b) - log(1 - a)) / 2
    a, b = 0.9, 0.3
    closed = 0.5 * (a - b) * (np.log(a / b) + np.log((1 - b) / (1 - a)))
    assert symmetric_kl([[a, 1 - a]], [[b, 1 - b]])[0] == pytest.approx(closed, rel=1e-12)


def test_input_curvature_of_a_quadratic_loss_is_h_times_the_hessian_on_the_sign_direction():
    a = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0, -1.0, 2.0], [-0.5, 0.2, 0.1, -3.0]], dtype=torch.float64)
    got = input_curvature(lambda points: 0.5 * (a * points ** 2).sum(1), x, h=0.01)
    z = torch.sign(a * x) / 2.0  # sign of the gradient a * x, normalised (4 coordinates)
    np.testing.assert_allclose(got.numpy(), (0.01 * a * z).norm(dim=1).numpy(), rtol=1e-10)


def test_holdout_kl_leaves_the_model_and_fine_tuning_stops_early(tmp_path):
    from src.evaluation.proxies import holdout_finetune, holdout_kl_scores

    config = load_config(QUICKSTART, ["training.epochs=1"])
    data = get_datamodule(config, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    before = model.theta.detach().clone()
    scores = holdout_kl_scores(model, data.train, data.val, 128, seed=0)
    assert torch.equal(model.theta, before)  # the model itself is untouched
    assert scores.shape == (len(data.train),) and np.all(scores >= 0) and scores.max() > 0
    epochs = holdout_finetune(model, data.val, 128, make_generator(0, "cpu"), max_epochs=30, patience=4)
    assert 4 <= epochs <= 30


# -- entanglement ------------------------------------------------------------------------------


def test_entanglement_of_points_with_a_known_answer():
    # separated: no spread within either set, means apart -> 0
    assert entanglement_score([[1, 0], [1, 0]], [[0, 1], [0, 1]]) == 0.0
    # retain spread 1 around (0, 0), forget a point at (0, 1): mu = (0, 1/2), between 1/4
    assert entanglement_score([[1, 0], [-1, 0]], [[0, 1], [0, 1]]) == pytest.approx(4.0)
    # class-wise: class 0 as above (4 examples, ES 4), class 1 separated (2 examples, ES 0)
    retain = np.array([[1, 0], [-1, 0], [1, 0]], dtype=float)
    forget = np.array([[0, 1], [0, 1], [0, 1]], dtype=float)
    ry, fy = np.array([0, 0, 1]), np.array([0, 0, 1])
    assert classwise_entanglement(retain, ry, forget, fy) == pytest.approx((4 * 4 + 0 * 2) / 6)
    assert normalised(650.0) == 0.5 and normalised(5000.0) == 1.0
    # per example: squared distance to its class's retain mean
    np.testing.assert_allclose(example_distances(retain, ry, forget, fy), [1.0, 1.0, 2.0])


def test_penultimate_embeddings_are_the_last_layers_inputs_normalised():
    config = load_config(QUICKSTART)
    data = get_datamodule(config, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    e = penultimate_embeddings(model, data.val)
    first = model.module.layers[0]
    with torch.no_grad():
        hidden = torch.relu(data.val.x.flatten(1) @ model.unflatten(model.theta)["layers.0.weight"].T
                            + model.unflatten(model.theta)["layers.0.bias"]).double()
    want = hidden / hidden.norm(dim=1, keepdim=True).clamp(min=1e-300)
    assert e.shape == (len(data.val), first.out_features)
    np.testing.assert_allclose(e, torch.where(hidden.norm(dim=1, keepdim=True) > 0, want, hidden).numpy(), atol=1e-6)


# -- RUM grouped by a proxy and by entanglement ---------------------------------------------------


@pytest.mark.parametrize("group_by", ["confidence", "entanglement"])
def test_rum_groups_by_a_proxy_or_by_entanglement(group_by, tmp_path, session_checkpoints):
    from src.runner import resolve_device, run
    from src.evaluation.proxies import load_learning_events

    step = "{algorithm: ft, max_lr: 0.01, weight_decay: 0.0005}"
    config = load_config(QUICKSTART, [
        "unlearning.algorithm=rum", f"unlearning.rum.group_by={group_by}",
        f"unlearning.rum.steps={{low: {step}, mid: {{algorithm: nothing}}, high: {step}}}",
        "training.epochs=3", "unlearning.epochs=1", f"logs_dir={tmp_path}", f"checkpoints_dir={session_checkpoints}",
        "evaluation.mia.threshold.enabled=false"])
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    groups = summary["rum"]["groups"]
    assert [len(g) for g in groups.values()] == [120, 120, 120]
    data = get_datamodule(config, "cpu")
    if group_by == "confidence":
        position = {int(t): i for i, t in enumerate(data.indices.train.tolist())}
        confidence = load_learning_events(config, data.indices.train)["confidence"]
        mean = {g: np.mean([confidence[position[i]] for i in groups[g]]) for g in groups}
        # high memorization = low confidence: every high example below every low one
        high = max(confidence[position[i]] for i in groups["high"])
        low = min(confidence[position[i]] for i in groups["low"])
        assert mean["high"] < mean["mid"] < mean["low"] and high <= low
    record = summary["rum"]["steps"][0]
    assert record["entanglement"] > 0 and 0 <= record["entanglement_normalised"] <= 1
    assert record["entanglement_classwise"] > 0


def test_a_learning_event_proxy_without_a_recording_pretraining_is_refused_before_anything_runs():
    from src.errors import ConfigError
    from src.runner import make_plan

    step = "{algorithm: ft}"
    base = ["unlearning.algorithm=rum", "unlearning.rum.group_by=confidence",
            f"unlearning.rum.steps={{low: {step}, mid: {step}, high: {step}}}"]
    for extra in (["training.pretrained=false"], ["secure_rng=true"]):
        with pytest.raises(ConfigError, match="unlearning.rum.group_by: 'confidence' is a learning-event proxy"):
            make_plan(load_config(QUICKSTART, base + extra))
    make_plan(load_config(QUICKSTART, base[:1] + ["unlearning.rum.group_by=curvature"] + base[2:] +
                          ["training.pretrained=false"]))


DP_SGD = ["training.dp_sgd.l2_norm_clip=1", "training.dp_sgd.target_epsilon=1", "training.dp_sgd.target_delta=1e-5"]


def test_only_sgd_training_records_learning_events_and_the_others_refuse_them():
    """The trainer names no algorithm: each declares whether its fit feeds the events. SGD
    does; DP-SGD (the SGD loop with other steps), Langevin and pnsgd do not, and pretrain
    refuses events for them before a step (DP-SGD inherits SGD's loop: without its own
    declaration it would silently hand back zero counts)."""
    from src.errors import ConfigError
    from src.registry import TRAINING_ALGORITHMS
    from src.runner import make_plan
    from src.training.algorithm import records_learning_events

    recording = {name for name, cls in TRAINING_ALGORITHMS.builtins().items() if cls.records_learning_events}
    assert recording == {"sgd"} and {"dp_sgd", "langevin", "pnsgd"} <= set(TRAINING_ALGORITHMS.builtins())
    config = load_config(QUICKSTART, ["training.epochs=1"] + DP_SGD)
    assert config.training.method == "dp_sgd" and not records_learning_events(config)
    assert records_learning_events(load_config(QUICKSTART))
    data = get_datamodule(config, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    before = model.theta.detach().clone()
    events = LearningEvents(len(data.train), "cpu")
    with pytest.raises(ConfigError, match="training.algorithm: 'dp_sgd' training records no learning events"):
        pretrain(config, data, model, lambda row: None, Console(quiet=True), events=events)
    assert torch.equal(model.theta, before) and float(events.counts.sum()) == 0  # refused before a step
    step = "{algorithm: ft}"
    rum = ["unlearning.algorithm=rum", "unlearning.rum.group_by=max_conf",
           f"unlearning.rum.steps={{low: {step}, mid: {step}, high: {step}}}"]
    with pytest.raises(ConfigError, match="'max_conf' is a learning-event proxy.*training.method is 'dp_sgd'"):
        make_plan(load_config(QUICKSTART, rum + DP_SGD))

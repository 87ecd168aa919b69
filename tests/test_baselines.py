"""The empirical baselines and the forgetting metrics: mask selection, modified entropy, ToW,
SVC-MIA, the NegGrad+ and SCRUB degenerate cases, SAM at rho 0, against closed forms, hand
computations and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from src.config import SAMConfig, load_config
from src.data.datamodule import get_datamodule
from src.errors import ConfigError
from src.evaluation.features import legacy_m_entropy, modified_entropy
from src.evaluation.svc_mia import svc_efficacy
from src.evaluation.tow import t_interval, tow, tow_mia
from src.runner import attach_run, make_plan
from src.training.sam import sam_gradient
from src.training.trainer import build_model
from src.unlearning.empirical import Tally
from src.unlearning.neggrad import ascent
from src.unlearning.saliency import saliency_mask
from tests.conftest import QUICKSTART

# Plain momentum SGD without weight decay, a constant rate, and no method-specific noise.
SGD = ["unlearning.optim=SGD", "unlearning.momentum=0.9", "unlearning.weight_decay=0", "unlearning.max_lr=0.05",
       "unlearning.lr_schedule=constant", "unlearning.epochs=2"]


@pytest.fixture(scope="module")
def data():
    return get_datamodule(load_config(QUICKSTART), "cpu")


def method(data, algorithm: str, *overrides: str):
    """A planned baseline attached to a fresh tiny_net and the mnist_5k splits, prepared."""
    config = load_config(QUICKSTART, [f"unlearning.algorithm={algorithm}", *SGD, *overrides])
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"), data=data)
    model = build_model(config, plan.input_shape, "cpu")
    with torch.no_grad():
        algorithm.prepare(model, lambda row: None)
    return algorithm, model


def unlearn(algorithm, model, epochs: int = 2):
    results = [algorithm.unlearn_epoch(model, e, lambda row: None) for e in range(1, epochs + 1)]
    assert algorithm.finished
    return results


# -- SalUn's mask -----------------------------------------------------------------------


def test_mask_largest_keeps_the_top_r_and_smallest_the_bottom_r():
    saliency = torch.tensor([0.3, 5.0, 0.1, 2.0, 4.0, 0.2, 1.0, 3.0, 0.05, 0.4])
    assert saliency_mask(saliency, 0.3, "largest").nonzero().flatten().tolist() == [1, 4, 7]
    assert saliency_mask(saliency, 0.3, "smallest").nonzero().flatten().tolist() == [2, 5, 8]
    generator = torch.Generator().manual_seed(0)
    for d, r in ((1001, 0.37), (3985, 0.5), (7, 0.9)):
        values = torch.rand(d, generator=generator)
        for select in ("largest", "smallest"):
            mask = saliency_mask(values, r, select)
            assert abs(int(mask.sum()) - r * d) <= 1
            kept, dropped = values[mask], values[~mask]
            if select == "largest":
                assert kept.min() > dropped.max()
            else:
                assert kept.max() < dropped.min()


def test_salun_moves_only_masked_parameters_unless_upstream_drift_is_asked_for(data):
    overrides = ("unlearning.weight_decay=0.01", "unlearning.salun.mask_ratio=0.3")
    algorithm, model = method(data, "salun", *overrides)
    before = model.theta.detach().clone()
    unlearn(algorithm, model)
    moved = model.theta.detach() != before
    assert algorithm.mask.sum() == int(0.3 * model.num_parameters)
    assert moved[algorithm.mask.bool()].float().mean() > 0.9
    assert not moved[~algorithm.mask.bool()].any()  # restore_masked: frozen means frozen
    algorithm, model = method(data, "salun", *overrides, "unlearning.salun.restore_masked=false")
    before = model.theta.detach().clone()
    unlearn(algorithm, model)
    # upstream: coupled weight decay and momentum still move the "frozen" coordinates
    assert (model.theta.detach() != before)[~algorithm.mask.bool()].float().mean() > 0.9


# -- modified entropy -------------------------------------------------------------------

ROWS = np.array([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3]])


def test_modified_entropy_is_song_and_mittals():
    # -(1 - p_y) ln p_y - sum_{c != y} p_c ln(1 - p_c), by hand:
    #   row 1, y = 0: 0.1 * 0.1053605 + 2 * 0.05 * 0.0512933             = 0.0156654
    #   row 2, y = 1: 0.5 * 0.6931472 + 0.2 * 0.2231436 + 0.3 * 0.3566749 = 0.4982048
    assert modified_entropy(ROWS, np.array([0, 1])) == pytest.approx([0.0156654, 0.4982048], abs=1e-6)
    # the true class at certainty has modified entropy 0; a wrong one at certainty is large
    assert modified_entropy(np.array([[1.0, 0.0]]), np.array([0]))[0] == pytest.approx(0.0, abs=1e-12)
    assert modified_entropy(np.array([[1.0, 0.0]]), np.array([1]))[0] > 60


def test_legacy_m_entropy_is_upstreams_label_independent_value():
    # labels {0, 1} present: -sum_{c in {0,1}} (1 - p_c) ln p_c - p_2 ln p_2, by hand:
    #   row 1: 0.1 * 0.1053605 + 0.95 * 2.9957323 + 0.05 * 2.9957323 = 3.0062683
    #   row 2: 0.8 * 1.6094379 + 0.5 * 0.6931472 + 0.3 * 1.2039728 = 1.9953158
    assert legacy_m_entropy(ROWS, np.array([0, 1])) == pytest.approx([3.0062683, 1.9953158], abs=1e-6)
    # each row's own label does not matter, only the set of labels present
    assert np.array_equal(legacy_m_entropy(ROWS, np.array([1, 0])), legacy_m_entropy(ROWS, np.array([0, 1])))
    assert not np.allclose(modified_entropy(ROWS, np.array([1, 0])), modified_entropy(ROWS, np.array([0, 1])))
    # with every class present it is -sum_c (1 - p_c) ln p_c
    every = legacy_m_entropy(ROWS, np.array([0, 1, 2]))[:2]
    assert every == pytest.approx(-((1 - ROWS) * np.log(ROWS)).sum(1))


# -- ToW --------------------------------------------------------------------------------


def test_tow_is_one_at_retrain_and_never_above_one_with_absolute_gaps():
    retrain = {"forget": 0.63, "retain": 0.69, "val": 0.64, "test": 0.687}
    assert tow(retrain, dict(retrain)) == 1.0
    assert tow_mia(retrain, dict(retrain), 0.73, 0.73) == 1.0
    rng = np.random.default_rng(0)
    signed_above_one = 0
    for _ in range(2000):
        a = dict(zip(retrain, rng.uniform(0, 1, 4)))
        r = dict(zip(retrain, rng.uniform(0, 1, 4)))
        assert 0 <= tow(a, r) <= 1 and 0 <= tow_mia(a, r, rng.uniform(), rng.uniform()) <= 1
        signed_above_one += tow(a, r, abs_gap=False) > 1
    assert signed_above_one > 0  # sharp-unlearn's signed form rewards forgetting more than retrain
    # the RUM formula on one case: (1 - 0.1)(1 - 0.05)(1 - 0.02)
    unlearned = {"forget": 0.73, "retain": 0.64, "val": 0.6, "test": 0.707}
    assert tow(unlearned, retrain) == pytest.approx(0.9 * 0.95 * 0.98)


def test_t_interval_is_students():
    mean, half = t_interval([0.7, 0.8, 0.9])
    # t_{0.975, 2} = 4.302653, s = 0.1, n = 3
    assert mean == pytest.approx(0.8) and half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert t_interval([0.5]) == (0.5, None)


# -- SVC MIA ----------------------------------------------------------------------------


def test_svc_mia_is_near_half_without_membership_signal_and_near_zero_on_overfit_members():
    no_signal, members_found = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        # members and non-members look alike (a model that does not leak): chance level
        draw = lambda n: rng.beta(5, 2, size=(n, 1))  # noqa: E731
        no_signal.append(svc_efficacy(draw(1000), draw(1000), draw(500)))
        # an overfit model: members' confidence near 1, non-members' spread out
        members, nonmembers = rng.beta(60, 1, size=(1000, 1)), rng.beta(2, 2, size=(1000, 1))
        members_found.append(svc_efficacy(members, nonmembers, members[:300]))
        assert svc_efficacy(members, nonmembers, rng.beta(2, 2, size=(300, 1))) > 0.9
    assert abs(np.mean(no_signal) - 0.5) < 0.08 and all(abs(e - 0.5) < 0.25 for e in no_signal)
    assert max(members_found) < 0.02


# -- NegGrad+, SCRUB, SAM degenerate cases ---------------------------------------------


def test_neggrad_plus_at_alpha_one_is_ft(data):
    ft, ft_model = method(data, "ft")
    ng, ng_model = method(data, "neggrad_plus", "unlearning.neggrad_plus.alpha=1")
    ft_results, ng_results = unlearn(ft, ft_model), unlearn(ng, ng_model)
    assert ft.steps_per_epoch() == ng.steps_per_epoch() == 26  # ceil(3240 / 128) retain batches
    assert not torch.equal(ft_model.theta, ft.original)
    assert torch.equal(ft_model.theta, ng_model.theta)
    assert [r.loss for r in ft_results] == [r.loss for r in ng_results]


def test_neggrad_plus_at_alpha_zero_is_gradient_ascent_on_cycled_forget_batches(data):
    ng, ng_model = method(data, "neggrad_plus", "unlearning.neggrad_plus.alpha=0", "unlearning.epochs=1")
    unlearn(ng, ng_model, epochs=1)
    # GA takes ceil(360 / 128) = 3 steps an epoch; NegGrad+ at alpha 0 takes 26 GA steps on the
    # same forget stream, cycled: replay them with GA's own step.
    ga, ga_model = method(data, "ga", "unlearning.epochs=1")
    assert ga.steps_per_epoch() == 3
    ga.optimizer, tally, stream = ga.new_optimizer(), Tally(), ga.forget_batches.cycle()
    with torch.enable_grad():
        for _ in range(26):
            x, y = next(stream)
            ga.descend(lambda: ascent(ga.cross_entropy(x, y)), tally, y.shape[0])
    assert torch.allclose(ng_model.theta, ga_model.theta, atol=1e-6)
    assert not torch.allclose(ga_model.theta, ga.original, atol=1e-3)


def test_scrub_without_max_steps_and_kl_is_ft_with_loss_gamma_ce(data):
    ft, ft_model = method(data, "ft")
    scrub, scrub_model = method(data, "scrub", "unlearning.scrub.msteps=-1", "unlearning.scrub.beta=0",
                                "unlearning.scrub.gamma=1")
    unlearn(ft, ft_model), unlearn(scrub, scrub_model)
    assert torch.equal(ft_model.theta, scrub_model.theta)
    # gamma scales the gradient: with SGD and no weight decay, FT at gamma times the rate
    half_ft, half_ft_model = method(data, "ft", "unlearning.max_lr=0.025")
    scrub, scrub_model = method(data, "scrub", "unlearning.scrub.msteps=-1", "unlearning.scrub.beta=0",
                                "unlearning.scrub.gamma=0.5")
    unlearn(half_ft, half_ft_model), unlearn(scrub, scrub_model)
    assert torch.allclose(half_ft_model.theta, scrub_model.theta, atol=1e-5)


def test_scrub_max_steps_count_as_the_original_unless_inclusive(data):
    scrub, _ = method(data, "scrub", "unlearning.scrub.msteps=2", "unlearning.epochs=4")
    assert [scrub.ascends(e) for e in range(4)] == [True, True, False, False]
    scrub, _ = method(data, "scrub", "unlearning.scrub.msteps=2", "unlearning.epochs=4",
                      "unlearning.scrub.msteps_inclusive=true")
    assert [scrub.ascends(e) for e in range(4)] == [True, True, True, False]


def test_sam_at_rho_zero_is_the_base_optimizer(data):
    plain, plain_model = method(data, "ft")
    sam, sam_model = method(data, "ft", "unlearning.sam.rho=0", "unlearning.sam.sign=min", "unlearning.sam.lamb=1")
    plain_results, sam_results = unlearn(plain, plain_model), unlearn(sam, sam_model)
    assert torch.equal(plain_model.theta, sam_model.theta)
    assert sam_results[0].examples == 2 * plain_results[0].examples  # two gradients a step all the same


@pytest.mark.parametrize("sign, adaptive", [("min", False), ("max", False), ("min", True), ("max", True)])
def test_sam_gradient_on_a_quadratic_is_the_closed_form(sign, adaptive):
    # L = 0.5 theta^T A theta: g = A theta, eps = rho T^2 g / ||T g||, g_adv = A (theta + eps)
    generator = torch.Generator().manual_seed(1)
    m = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    a = m @ m.T + torch.eye(5, dtype=torch.float64)
    theta = torch.randn(5, generator=generator, dtype=torch.float64).requires_grad_(True)
    start = theta.detach().clone()
    cfg = SAMConfig(rho=0.3, adaptive=adaptive, lamb=0.7, sign=sign)
    loss, _, g_hat = sam_gradient(lambda: (0.5 * theta @ a @ theta, None), theta, cfg)
    g = a @ start
    scale = start.abs() if adaptive else torch.ones(5, dtype=torch.float64)
    eps = 0.3 * scale ** 2 * g / torch.linalg.vector_norm(scale * g)
    s = 1 if sign == "min" else -1
    assert torch.allclose(g_hat, g + s * 0.7 * (a @ eps), atol=1e-10)
    assert torch.equal(theta.detach(), start)  # theta restored exactly
    assert float(loss) == pytest.approx(float(0.5 * start @ a @ start))


# -- influence: the exact inverse two ways, the heuristic recursion as written ------------


def test_influence_solvers_agree_and_the_heuristic_is_upstreams_recursion():
    from src.unlearning.influence import cg_solve, woodbury_solve, woodfisher_heuristic

    generator = torch.Generator().manual_seed(2)
    grads = torch.randn(30, 12, generator=generator, dtype=torch.float64)
    v = torch.randn(12, generator=generator, dtype=torch.float64)
    direct = 5.0 * torch.linalg.solve(5.0 * torch.eye(12, dtype=torch.float64) + grads.T @ grads, v)
    assert torch.allclose(woodbury_solve(v, grads, 5.0), direct, atol=1e-10)
    assert torch.allclose(cg_solve(v, grads, 5.0, 1e-12), direct, atol=1e-8)
    # two samples by hand: k = v - (v.g2 / (N + g1.g2)) g1
    k = woodfisher_heuristic(v, grads[:2], 5.0)
    t = grads[0] @ grads[1]
    assert torch.allclose(k, v - (v @ grads[1]) / (5.0 + t) * grads[0])


# -- no certificate, and refusals -------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ft", "ga", "neggrad_plus", "l1_sparse", "scrub", "random_label", "salun",
                                       "influence", "sharp_minmax"])
def test_empirical_methods_claim_no_certificate(algorithm):
    plan = make_plan(load_config(QUICKSTART, [f"unlearning.algorithm={algorithm}"])).privacy
    assert plan.certified_epsilon is None and plan.certified_delta is None and plan.certificate_valid is False
    assert plan.invalid_reasons == ["empirical method"]


def test_sam_is_refused_in_certified_phases():
    with pytest.raises(ConfigError, match="unlearning.sam is not allowed for 'iteration'"):
        make_plan(load_config(QUICKSTART, ["unlearning.sam.rho=0.1"]))
    with pytest.raises(ConfigError, match="training.sam|sam and dp_sgd"):
        load_config(QUICKSTART, ["training.sam.rho=0.1", "training.dp_sgd.l2_norm_clip=1",
                                 "training.dp_sgd.target_epsilon=1", "training.dp_sgd.target_delta=1e-5"])


def test_sam_in_pretraining_is_part_of_the_recipe_and_rho_zero_is_the_plain_step(data):
    from src.config import pretrained_key, run_id
    from src.training.optim import SGD as SGDStep, ScheduledOptimizer, constant_schedule
    from src.training.steps import EagerStep

    plain = load_config(QUICKSTART)
    with_sam = load_config(QUICKSTART, ["training.sam.rho=0.05"])
    assert pretrained_key(with_sam) != pretrained_key(plain) and run_id(with_sam) != run_id(plain)
    assert "sam" not in plain.to_dict()["training"]  # unused: not part of any existing identity
    thetas = []
    for sam in (None, SAMConfig(rho=0.0), SAMConfig(rho=0.05)):
        model = build_model(plain, (28, 28, 1), "cpu")
        optimizer = ScheduledOptimizer(SGDStep(model.theta, momentum=0.9), constant_schedule(0.1))
        step = EagerStep(model, data.train, None, optimizer, sam=sam)
        for start in range(0, 512, 128):
            step(torch.arange(start, start + 128), None)
        thetas.append(model.theta.detach().clone())
    assert torch.equal(thetas[0], thetas[1]) and not torch.allclose(thetas[0], thetas[2])


def test_shadow_sets_are_the_papers_first_rows_or_a_seeded_sample_capped_by_n_shadow():
    from src.config import SVCMIAConfig
    from src.evaluation.svc_mia import shadow_sets

    outputs = {"retain": (None, np.zeros(3240)), "test": (None, np.zeros(1000))}
    members, nonmembers = shadow_sets(outputs, SVCMIAConfig(shadow_sampling="first"), np.random.default_rng(0))
    assert members.tolist() == list(range(1000)) and nonmembers.tolist() == list(range(1000))
    members, nonmembers = shadow_sets(outputs, SVCMIAConfig(n_shadow=300), np.random.default_rng(0))
    assert len(members) == len(set(members.tolist())) == 300 and members.max() >= 1000 and len(nonmembers) == 300

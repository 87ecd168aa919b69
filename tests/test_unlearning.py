"""The certified algorithms: one noisy step against the formula, the noise, the plans of the
reference configs, refusals, and every algorithm end to end on the bundled MNIST digits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from src.config import load_config
from src.data.batches import make_generator
from src.data.datamodule import get_datamodule
from src.errors import ConfigError
from src.privacy.gaussian import classical_gaussian_sigma
from src.runner import attach_run, make_plan, resolve_device, run
from src.seeds import derive_seed
from src.training.trainer import Console, build_model
from tests.conftest import QUICKSTART, REPO, UPSTREAM_CONFIGS
from tests.reference_values import case_id, reference_cases

GC = ["unlearning.algorithm=iteration"]
CC = ["unlearning.algorithm=contractive_coefficients", "unlearning.init_model_clip=7",
      "unlearning.contractive_coefficients.epsilon_target=1", "unlearning.contractive_coefficients.sigma=0.01",
      "unlearning.contractive_coefficients.model_clip=0.01",
      "unlearning.contractive_coefficients.noise_addition_after_projection=true", "unlearning.weight_decay=500"]
CC_BEFORE = CC + ["unlearning.contractive_coefficients.noise_addition_after_projection=false",
                  "unlearning.contractive_coefficients.noise_addition_before_projection=true",
                  "unlearning.contractive_coefficients.grad_clip=1.0"]
OP = ["unlearning.algorithm=dp-baseline", "unlearning.dp-baseline.epsilon_target=1"]
RETRAIN = ["unlearning.algorithm=retrain"]


def setup(overrides, seed_batch=0):
    """A planned algorithm attached to a fresh tiny_net, and one mnist_5k retain batch."""
    config = load_config(QUICKSTART, overrides)
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"))
    model = build_model(config, plan.input_shape, "cpu")
    data = get_datamodule(config, "cpu")
    idx = torch.arange(seed_batch * 128, seed_batch * 128 + 128)
    return config, plan, algorithm, model, data.retain.x[idx], data.retain.y[idx]


def gradient(model, theta, x, y):
    theta = theta.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x, theta), y)
    return torch.autograd.grad(loss, theta)[0]


def replay_noise(config, n):
    """The same Gaussian draws the run makes: the noise stream is seeded from global_seed."""
    generator = make_generator(derive_seed(config.global_seed, "unlearning-noise"), "cpu")
    return [torch.randn(3985, generator=generator) for _ in range(n)]


# -- one noisy step against the formula ------------------------------------------------------


def test_gradient_clipping_step_is_the_formula_when_sigma_is_zero():
    config, plan, algorithm, model, x, y = setup(GC + ["unlearning.iteration.grad_clip=0.5"])
    algorithm.sigmas = np.zeros(plan.privacy.noisy_steps)
    u = config.unlearning
    with torch.no_grad():
        model.theta.mul_(3)  # a model far outside the ball, so clipping matters
    theta0 = model.theta.detach().clone()
    g = gradient(model, theta0, x, y)
    assert g.norm() > 0.5  # the clip is active
    expected = theta0 - u.max_lr * (g * (0.5 / g.norm()) + u.weight_decay * theta0)
    result = algorithm.noisy_step(model, x, y, 0)
    assert torch.allclose(model.theta.detach(), expected, atol=1e-7, rtol=1e-5)
    assert result.eta == u.max_lr and result.sigma == 0.0 and result.count == 128


def _noise_increments(config, plan, algorithm, model, x, y, steps=3):
    """(theta_{t+1} - the noise-free update of theta_t) / sigma_t for a few noisy steps."""
    u = config.unlearning
    increments = []
    for step in range(steps):
        theta = model.theta.detach().clone()
        g = gradient(model, theta, x, y)
        deterministic = theta - u.max_lr * (g * torch.clamp(u.iteration.grad_clip / g.norm(), max=1)
                                            + u.weight_decay * theta)
        result = algorithm.noisy_step(model, x, y, step)
        increments.append((model.theta.detach() - deterministic) / result.sigma)
    return increments


def test_gradient_clipping_noise_has_the_planned_variance_and_is_fresh_every_step():
    config, plan, algorithm, model, x, y = setup(GC)
    increments = _noise_increments(config, plan, algorithm, model, x, y)
    for xi in increments:
        assert abs(xi.mean().item()) < 0.06 and xi.var().item() == pytest.approx(1.0, abs=0.08)
    assert not torch.allclose(increments[0], increments[1]) and not torch.allclose(increments[1], increments[2])
    # the draws are exactly the seeded stream, so a run can be replayed
    assert torch.allclose(increments[0], replay_noise(config, 1)[0], atol=1e-3)


def test_reuse_noise_adds_the_same_vector_every_step():
    config, plan, algorithm, model, x, y = setup(GC + ["compat.reuse_noise=true"])
    increments = _noise_increments(config, plan, algorithm, model, x, y)
    assert torch.allclose(increments[0], increments[1], atol=1e-3)
    assert torch.allclose(increments[1], increments[2], atol=1e-3)
    assert increments[0].var().item() == pytest.approx(1.0, abs=0.08)
    assert plan.privacy.certificate_valid is False and plan.privacy.certified_epsilon is None


@pytest.mark.parametrize("variant", ["after", "before"])
def test_model_clipping_step_replays_exactly(variant):
    overrides = CC if variant == "after" else CC_BEFORE
    config, plan, algorithm, model, x, y = setup(overrides)
    cc, u = config.unlearning.contractive_coefficients, config.unlearning
    theta0 = model.theta.detach().clone()
    g = gradient(model, theta0, x, y)
    update = g + u.weight_decay * theta0
    if cc.grad_clip:
        update = update * torch.clamp(cc.grad_clip / update.norm(), max=1)
    (xi,) = replay_noise(config, 1)
    moved = theta0 - u.max_lr * update
    if variant == "before":
        moved = moved + cc.sigma * xi
    expected = moved * torch.clamp(cc.model_clip / moved.norm(), max=1)
    if variant == "after":
        expected = expected + cc.sigma * xi
    algorithm.noisy_step(model, x, y, 0)
    assert torch.allclose(model.theta.detach(), expected, atol=1e-6)


def test_output_perturbation_projects_then_adds_the_classical_sigma():
    config, plan, algorithm, model, x, y = setup(OP)
    sigma = classical_gaussian_sigma(1.0, 1e-5, 2 * 0.01)
    assert plan.privacy.init_sigma == pytest.approx(sigma) and sigma == pytest.approx(0.09689610451459885, rel=1e-6)
    theta0 = model.theta.detach().clone()
    (xi,) = replay_noise(config, 1)
    algorithm.prepare(model, lambda row: None)
    expected = theta0 * (0.01 / theta0.norm()) + sigma * xi
    assert torch.allclose(model.theta.detach(), expected, atol=1e-6)
    assert algorithm.finished


def test_analytic_output_perturbation_needs_less_noise_for_the_same_certificate():
    classical = make_plan(load_config(QUICKSTART, OP)).privacy
    analytic = make_plan(load_config(QUICKSTART, OP + ["unlearning.dp-baseline.calibration=analytic"])).privacy
    assert analytic.init_sigma < classical.init_sigma
    assert analytic.certified_delta == pytest.approx(1e-5, rel=1e-6) and classical.certified_delta < 1e-5


def test_retrain_starts_from_a_fresh_initialisation():
    config, plan, algorithm, model, x, y = setup(RETRAIN)
    with torch.no_grad():
        model.theta.mul_(0.0).add_(1.0)
    algorithm.prepare(model, lambda row: None)
    fresh = build_model(load_config(QUICKSTART, ["global_seed=0"]), plan.input_shape, "cpu")
    from src.models.model import ModelFactory

    expected = torch.cat([p.detach().reshape(-1) for p in ModelFactory.create_model(
        "tiny_net", 10, (28, 28, 1), seed=derive_seed(config.global_seed, "retrain-init")).parameters()])
    assert torch.equal(model.theta.detach(), expected) and not torch.equal(expected, fresh.theta.detach())
    zeros = setup(RETRAIN + ["unlearning.retrain.start_from_all_zeros=true", "unlearning.init_sigma=1.0",
                             "unlearning.init_model_clip=0.5"])
    zeros[2].prepare(zeros[3], lambda row: None)
    assert zeros[3].theta.norm().item() == pytest.approx(0.5, rel=1e-5)  # zeros + noise, then clipped


# -- plans of the reference configs (the dry-run) against the reference's own numbers ---------


UPSTREAM_COMPAT = ["compat.renyi_conversion=upstream", "compat.pabi_lambda0=upstream"]


def _reference_plan(case, extra=()):
    overrides = list(UPSTREAM_COMPAT) + list(extra)
    return make_plan(load_config(UPSTREAM_CONFIGS / case["config"], overrides))


@pytest.mark.parametrize("case", reference_cases("pabi"), ids=case_id)
def test_pabi_plans_reproduce_the_reference(case):
    variant = case["variant"]
    extra = {"as_config": [], "noise_schedule=decreasing": ["unlearning.noise_schedule=decreasing"],
             "weight_decay=0": ["unlearning.weight_decay=0"]}[variant]
    plan = _reference_plan(case, extra)
    value = case["value"]
    assert plan.privacy.noisy_steps == value["pabi_steps_T"]
    assert plan.privacy.details["reg_saved_pabi_steps"] == value["reg_shortcut_used"]
    sigmas = np.array(plan.privacy.sigma_t)
    # The reference computed sigma in float32 (values.json description); 1e-5 covers the one
    # case where float32 lost digits in 1 - rho^T (see tests/test_privacy_pabi.py).
    assert sigmas[0] == pytest.approx(value["sigma_t_first"], rel=1e-5)
    assert sigmas[-1] == pytest.approx(value["sigma_t_last"], rel=1e-5)
    if "sigma_t_all" in value:
        assert np.allclose(sigmas, value["sigma_t_all"], rtol=1e-5)
    row = plan.algorithm.certificate_row()
    assert row["epsilon"] == pytest.approx(value["final_epsilon"], rel=1e-6)  # logged under the switch
    assert row["epsilon_published"] == pytest.approx(value["final_epsilon"], rel=1e-6)
    assert row["delta"] == value["final_delta"] and row["certificate_valid"] is False


def test_the_reference_gradient_clipping_label_epsilon_1_is_certified_at_7_084():
    plan = make_plan(load_config(UPSTREAM_CONFIGS / "budget_curve_runs/pabi-cifar/0saif0p0_config.yaml"))
    # eps_R = 1 converts to 7.0772; the float32 rounding margin (a PABI shift of 2.3e-6 per
    # step, src/privacy/float_rounding.py) raises eps_R by 0.16% and epsilon to 7.0839
    assert plan.privacy.details["float32_rounding_shift"] > 0
    assert round(plan.privacy.certified_epsilon, 3) == 7.084
    assert round(plan.privacy.epsilon_published, 4) == 1.0036
    assert plan.privacy.certificate_valid is True  # the default logs the true certificate
    assert plan.algorithm.certificate_row()["epsilon"] == pytest.approx(plan.privacy.certified_epsilon)


def test_epsilon_target_calibrates_a_true_epsilon():
    plan = make_plan(load_config(QUICKSTART))
    # within 1e-8: the float32 rounding shift is that of the first pass's slightly larger sigmas
    assert plan.privacy.certified_epsilon <= 1.0 and plan.privacy.certified_epsilon == pytest.approx(1.0, rel=1e-8)
    reference = make_plan(load_config(QUICKSTART, ["unlearning.iteration.epsilon_target=null",
                                                   "unlearning.iteration.epsilon_renyi_target=1"]))
    ratio = plan.privacy.sigma_t[0] / reference.privacy.sigma_t[0]
    # the reference's sigmas carry no rounding margin: the calibrated ones a little (< 1e-3)
    assert 1 < ratio * np.sqrt(plan.privacy.details["epsilon_renyi"]) < 1 + 1e-3
    assert ratio == pytest.approx(5.72, abs=0.01)


def _cc_overrides(case):
    inputs = case["inputs"]
    variant = case["variant"]
    if variant.startswith("grad_clip="):
        return [f"unlearning.contractive_coefficients.grad_clip={inputs['grad_clip']}",
                "unlearning.contractive_coefficients.noise_addition_before_projection=true",
                "unlearning.contractive_coefficients.noise_addition_after_projection=false"]
    if variant == "init_sigma=init_model_clip":
        return [f"unlearning.init_sigma={inputs['init_sigma']}"]
    return []


@pytest.mark.parametrize("case", reference_cases("cc_delta_trajectory"), ids=case_id)
def test_model_clipping_plans_stop_where_the_reference_stops(case):
    value = case["value"]
    config = load_config(UPSTREAM_CONFIGS / case["config"], _cc_overrides(case))
    if value["stop_step"] is None:
        with pytest.raises(ConfigError, match="does not reach delta"):
            make_plan(config)
        return
    plan = make_plan(config)
    stop = value["stop_step"]
    if case["variant"].startswith("grad_clip="):
        # Noise before the projection: the first step starts in the C0-ball (C0 = 7 or 30),
        # r = 2(C0 + eta C1)/sigma, where the reference used the R-ball; that step contracts
        # nothing (gamma = 1 in double precision), so the reference's trajectory comes one
        # step later.
        assert plan.privacy.details["gamma"][0] == 1.0
        stop += 1
    assert plan.privacy.noisy_steps == stop
    assert plan.privacy.details["delta_0"] == pytest.approx(value["delta_0"], rel=1e-6)
    if value["delta_at_stop"] > 1e-12:  # below, the reference's 1 - erf had underflowed
        # noise before the projection: the float32 rounding of the step adds ~2^-23 of the
        # distance (contraction.step_radius), which moves delta by up to 5e-5 relative
        rel = 1e-4 if case["variant"].startswith("grad_clip=") else 1e-5
        assert plan.privacy.certified_delta >= value["delta_at_stop"] * (1 - 1e-5)
        assert plan.privacy.certified_delta == pytest.approx(value["delta_at_stop"], rel=rel)
    assert plan.privacy.certified_delta <= 1e-5


@pytest.mark.parametrize("case", reference_cases("dp_baseline_sigma"), ids=case_id)
def test_output_perturbation_sigma_of_the_reference_configs(case):
    plan = make_plan(load_config(UPSTREAM_CONFIGS / case["config"]))
    assert plan.privacy.init_sigma == pytest.approx(case["value"], rel=1e-6)


def test_every_reference_config_plans_with_the_documented_noisy_steps():
    expected = {"cc-cifar": {6, 9, 36}, "cc-mnist": {1, 6}, "pabi-mnist": {1, 6}, "dp-baseline-cifar": {0},
                "retrain-mnist": {0}, "pabi-cifar": {1, 5, 10, 11, 93}}
    seen: dict[str, set] = {}
    paths = sorted(UPSTREAM_CONFIGS.rglob("*.yaml"))
    for path in paths:  # all 442, the DP-SGD ones calibrating their noise (cached per inputs)
        seen.setdefault(path.parent.name, set()).add(make_plan(load_config(path)).privacy.noisy_steps)
    assert len(paths) == 442
    for folder, steps in expected.items():
        assert seen[folder] == steps, folder
    assert seen["pabi"] == {11}  # convergence runs (Figure 2)
    assert seen["dp-sgd-cifar10-fc"] == seen["dp-sgd-cifar100-fc"] == {0}


def test_the_cli_dry_run_of_reference_configs():
    from tests.conftest import run_cli

    for relative in ("budget_curve_runs/cc-cifar/365ah7bj_config.yaml", "dp_sgd_runs/dp-sgd-cifar10-fc/1tmh6p2f_config.yaml"):
        result = run_cli("experiment.py", "--config", UPSTREAM_CONFIGS / relative, "--dry-run")
        plan = json.loads(result.stdout.strip().splitlines()[-1])
        assert plan["pretrained"] in ("logs/iep18hnq/ckpt", False) and plan["data_present"] in (True, False)
        if plan["pretrained"]:  # the plan is printed, and the run it plans would fail: so does the dry run
            assert result.returncode == 2 and plan["pretrained_exists"] is False
            assert "training.pretrained: 'logs/iep18hnq/ckpt' does not exist" in result.stderr
        else:
            assert result.returncode == 0, result.stderr


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, key", [
    (GC + ["unlearning.momentum=0.9"], "unlearning.momentum"),
    (CC + ["unlearning.nesterov=true"], "unlearning.nesterov"),
    (GC + ["unlearning.optim=Adam"], "unlearning.optim"),
    (CC + ["unlearning.contractive_coefficients.noise_addition_before_projection=true"],
     "unlearning.contractive_coefficients.noise_addition_before_projection and noise_addition_after_projection"),
    (CC + ["unlearning.contractive_coefficients.grad_clip=1.0"], "unlearning.contractive_coefficients.grad_clip"),
    (CC_BEFORE + ["unlearning.contractive_coefficients.grad_clip=false"],
     "unlearning.contractive_coefficients.noise_addition_before_projection"),
    (CC + ["unlearning.contractive_coefficients.noise_addition_after_projection=false"],
     "unlearning.contractive_coefficients.noise_addition_after_projection"),
    (GC + ["unlearning.lr_schedule=cos"], "unlearning.lr_schedule"),
    (GC + ["unlearning.epochs=1", "unlearning.iteration.grad_clip=0.001"], "unlearning.epochs"),
    (GC + ["unlearning.max_lr=0.01", "unlearning.weight_decay=200"], "unlearning.weight_decay"),
    (GC + ["unlearning.init_model_clip=0"], "unlearning.init_model_clip"),
    (OP + ["unlearning.init_model_clip=0"], "unlearning.init_model_clip"),
    (["unlearning.algorithm=dp-sgd"], "training.dp_sgd"),
    (CC + ["unlearning.contractive_coefficients.sigma=0.0001", "unlearning.contractive_coefficients.model_clip=1",
           "unlearning.epochs=1"], "unlearning.contractive_coefficients.sigma"),
])
def test_refusals_at_validation_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        make_plan(load_config(QUICKSTART, overrides))
    assert str(info.value).startswith(key), str(info.value)


def test_a_budget_too_small_for_T_says_T_and_the_budget():
    with pytest.raises(ConfigError, match=r"needs T = 400 noisy steps, but the budget is 1 epochs x 26 steps = 26"):
        make_plan(load_config(QUICKSTART, ["unlearning.epochs=1", "unlearning.iteration.grad_clip=0.25",
                                           "unlearning.weight_decay=0"]))


def test_clamp_is_accounted_with_the_data_independent_box_diameter():
    plan = make_plan(load_config(QUICKSTART, ["unlearning.init_model_clip_type=clamp",
                                              "unlearning.init_model_clip=0.001", "unlearning.epochs=10"]))
    assert plan.privacy.details["init_radius"] == pytest.approx(0.001 * np.sqrt(3985))


# -- end to end on mnist_5k: the logged stop step is the planned one --------------------------


@pytest.mark.parametrize("name, overrides", [
    ("gc-certified", GC), ("gc-published", GC + ["unlearning.iteration.epsilon_target=null",
                                                  "unlearning.iteration.epsilon_renyi_target=1"]),
    ("cc", CC), ("cc-before", CC_BEFORE), ("op", OP), ("retrain", RETRAIN),
])
def test_each_algorithm_end_to_end(name, overrides, tmp_path, session_checkpoints, capsys):
    config = load_config(QUICKSTART, overrides + [f"logs_dir={tmp_path}", f"checkpoints_dir={session_checkpoints}",
                                                  "training.epochs=3", "unlearning.epochs=1", f"name={name}"])
    plan = make_plan(config)
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    rows = [json.loads(line) for line in (tmp_path / plan.run_id / "metrics.jsonl").read_text().splitlines()]
    noisy = [r for r in rows if r.get("sigma_t", 0) > 0]
    assert len(noisy) == plan.privacy.noisy_steps == summary["noisy_steps"]
    (certificate,) = [r for r in rows if "certified_epsilon" in r]
    if plan.privacy.noisy_steps:
        assert certificate["stop_unlearn"] == plan.privacy.noisy_steps
    assert certificate["certified_epsilon"] == plan.privacy.certified_epsilon
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    post_noise = [r for r in rows if "Val (Post Noise Addition)_accuracy" in r]
    assert len(post_noise) == 1


def test_a_void_certificate_is_logged_and_said(tmp_path, session_checkpoints, capsys):
    config = load_config(QUICKSTART, ["compat.reuse_noise=true", f"logs_dir={tmp_path}", "unlearning.epochs=1",
                                      f"checkpoints_dir={session_checkpoints}", "training.epochs=3"])
    summary = run(config, None, resolve_device("cpu"), Console())
    out = capsys.readouterr().out
    assert "WARNING: the certificate does not hold for this run: compat.reuse_noise" in out
    assert summary["certificate_valid"] is False and summary["certified_epsilon"] is None
    assert summary["certificate"]["epsilon"] == pytest.approx(summary["epsilon_published"])


def test_fine_grained_validation_rows(tmp_path, session_checkpoints):
    config = load_config(QUICKSTART, ["unlearning.fine_grained_validation=true", f"logs_dir={tmp_path}",
                                      f"checkpoints_dir={session_checkpoints}", "training.epochs=3",
                                      "unlearning.epochs=2"])
    plan = make_plan(config)
    run(config, None, resolve_device("cpu"), Console(quiet=True))
    rows = [json.loads(line) for line in (tmp_path / plan.run_id / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["unlearn_epoch"] for r in rows if "Retain (Unlearn)_accuracy" in r]
    steps = plan.steps_per_epoch
    noisy = [i / steps for i in range(plan.privacy.noisy_steps - 1)]  # T - 1 rows while still noisy
    assert epochs == pytest.approx(noisy + [0.5, 1.5])


def _delta_trajectory_60_digits(epsilon, delta0, radii):
    """delta_{t+1} = theta_{eps~}(r_t) delta_t, eps~ = log(1 + (e^eps - 1)/delta_t), in 60 digits."""
    import mpmath

    out = []
    with mpmath.workdps(60):
        delta = mpmath.mpf(delta0)
        for r in radii:
            eps_t = mpmath.log(1 + (mpmath.e ** epsilon - 1) / delta)
            r = mpmath.mpf(r)
            delta *= mpmath.ncdf(-eps_t / r + r / 2) - mpmath.exp(eps_t) * mpmath.ncdf(-eps_t / r - r / 2)
            out.append(float(delta))
    return out


def test_model_clipping_with_noise_before_projection_starts_from_the_c0_ball():
    # budget_curve_runs' R = 0.625, sigma = 0.5, eta = 1e-4 config with grad_clip = 1 and the
    # noise before the projection: the first step moves models of the C0 = 30 ball, so
    # r_1 = 2(30 + 1e-4)/0.5, and only then r = 2(0.625 + 1e-4)/0.5
    path = REPO / "budget_curve_runs" / "cc-cifar" / "mc-cifar-R_0.625-sigma_0.5-eta_1e-4-lam_0-d142-g1234.yaml"
    config = load_config(path, ["unlearning.contractive_coefficients.grad_clip=1",
                                "unlearning.contractive_coefficients.noise_addition_before_projection=true",
                                "unlearning.contractive_coefficients.noise_addition_after_projection=false"])
    plan = make_plan(config)
    privacy, d = plan.privacy, plan.algorithm.context.num_parameters

    def rounding(start):  # each run's two float32 roundings before the noise (float_rounding.py)
        return 2 * (2.0**-24 * (start + 1e-4) + math.sqrt(d) * 2.0**-150)

    exact = _delta_trajectory_60_digits(1.0, 1.0, [(2 * (30 + 1e-4) + 2 * rounding(30)) / 0.5]
                                        + [(2 * (0.625 + 1e-4) + 2 * rounding(0.625)) / 0.5] * 10)
    assert exact[8] == pytest.approx(1.4186e-4, rel=1e-4)  # after 9 steps: 14x the target (was printed 3.9e-7)
    assert privacy.noisy_steps == 10 and exact[9] <= 1e-5 < exact[8]
    assert privacy.certified_delta == pytest.approx(exact[9], rel=1e-9) and privacy.certified_delta >= exact[9]
    # with initial noise the start is unbounded: the first step contracts nothing either
    noisy = make_plan(load_config(path, ["unlearning.init_sigma=30", "unlearning.contractive_coefficients.grad_clip=1",
                                         "unlearning.contractive_coefficients.noise_addition_before_projection=true",
                                         "unlearning.contractive_coefficients.noise_addition_after_projection=false"]))
    assert noisy.privacy.details["gamma"][0] == 1.0

"""Deletion requests over time on the bundled MNIST digits: the schedule, a stream of one
request against the single run, that no deleted example is read after its request, the
logged certificates against the dry-run's, and request k's starting points for the audit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.audit.stream_request import request_starting_points
from src.config import load_config, run_id
from src.data.datamodule import get_datamodule
from src.errors import ConfigError
from src.privacy.composition import gaussian_composition
from src.privacy.rdp import linear_rdp_to_dp
from src.privacy.rounding import round_up
from src.request_stream.schedule import make_schedule
from src.runner import attach_run, make_plan, resolve_device, run
from src.training.trainer import Console, Trainer, build_model
import src.request_stream.run as stream_run
import src.training.trainer as trainer_module
from tests.conftest import QUICKSTART, run_main

GC = ["unlearning.algorithm=iteration"]
CC = ["unlearning.algorithm=contractive_coefficients", "unlearning.init_model_clip=7",
      "unlearning.contractive_coefficients.epsilon_target=1", "unlearning.contractive_coefficients.sigma=0.01",
      "unlearning.contractive_coefficients.model_clip=0.01",
      "unlearning.contractive_coefficients.noise_addition_after_projection=true", "unlearning.weight_decay=500"]
OP = ["unlearning.algorithm=dp-baseline", "unlearning.dp-baseline.epsilon_target=1"]
RETRAIN = ["unlearning.algorithm=retrain"]
METHODS = [("gc", GC), ("cc", CC), ("op", OP), ("retrain", RETRAIN)]


def config_of(overrides, tmp_path, checkpoints, name="stream"):
    return load_config(QUICKSTART, overrides + [f"logs_dir={tmp_path}", f"checkpoints_dir={checkpoints}",
                                                "training.epochs=3", "unlearning.epochs=2", f"name={name}"])


def rows_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- the schedule ----------------------------------------------------------------------------


class Section:
    def __init__(self, num_requests=None, sizes=None, per_class=False, seed=0):
        self.num_requests, self.sizes, self.per_class, self.seed = num_requests, sizes, per_class, seed


def test_equal_requests_partition_the_forget_set_in_a_seeded_order():
    schedule = make_schedule(Section(num_requests=7), 360)
    assert schedule.sizes == [52, 52, 52, 51, 51, 51, 51]
    assert np.array_equal(np.sort(np.concatenate(schedule.requests)), np.arange(360))
    for r in range(8):
        deleted, remaining = schedule.deleted_through(r), schedule.remaining_after(r)
        assert len(deleted) == sum(schedule.sizes[:r]) and np.intersect1d(deleted, remaining).size == 0
        assert np.array_equal(np.sort(np.concatenate([deleted, remaining])), np.arange(360))
    again, other = make_schedule(Section(num_requests=7), 360), make_schedule(Section(num_requests=7, seed=1), 360)
    assert all(np.array_equal(a, b) for a, b in zip(schedule.requests, again.requests))
    assert not np.array_equal(schedule.requests[0], other.requests[0])
    # a seeded order, not the split's order
    assert not np.array_equal(schedule.requests[0], np.arange(52))


def test_explicit_sizes_and_per_class_requests():
    schedule = make_schedule(Section(sizes=[10, 300, 50]), 360)
    assert schedule.sizes == [10, 300, 50]
    labels = np.array([3, 1, 3, 0, 1, 3, 0])
    per_class = make_schedule(Section(per_class=True, seed=4), 7, labels)
    assert sorted(per_class.sizes) == [2, 2, 3]
    for positions in per_class.requests:
        assert len(set(labels[positions])) == 1  # one class per request
    assert sorted(int(labels[p[0]]) for p in per_class.requests) == [0, 1, 3]


def test_per_class_requests_of_the_bundled_digits_are_planned_from_their_labels():
    config = load_config(QUICKSTART, ["requests.per_class=true", "requests.seed=5"])
    stream = make_plan(config).stream
    labels = get_datamodule(config, "cpu").forget.y.numpy()
    assert len(stream.requests) == len(np.unique(labels)) == 10
    assert [r.sizes.forget for r in stream.requests] == [int((labels == labels[p[0]]).sum())
                                                         for p in stream.schedule.requests]
    assert stream.requests[-1].deleted == 360 and stream.requests[-1].sizes.retain == 3240
    assert "one request per class" in stream.as_dict()["schedule"]


@pytest.mark.parametrize("section, key", [
    (Section(num_requests=361), "requests.num_requests: 361 requests cannot split a forget set of 360"),
    (Section(sizes=[100, 100]), "requests.sizes: [100, 100] sums to 200, but the forget set has 360"),
])
def test_a_schedule_that_does_not_fit_the_forget_set_is_refused(section, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        make_schedule(section, 360)


@pytest.mark.parametrize("overrides, message", [
    (["requests.num_requests=2", "requests.per_class=true"], "exactly one of num_requests"),
    (["requests.seed=3"], "exactly one of num_requests"),
    (["requests.num_requests=0"], "requests.num_requests: got 0"),
    (["requests.sizes=[3, -1]"], "requests.sizes.1: got -1"),
    (["requests.epochs=0"], "requests.epochs: got 0"),
])
def test_the_requests_section_is_validated(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(QUICKSTART, overrides)


def test_a_method_not_shown_to_hold_from_any_start_is_refused_in_a_stream(tmp_path):
    config = load_config(QUICKSTART, ["unlearning.algorithm=dp-sgd", "requests.num_requests=2",
                                      "training.dp_sgd.l2_norm_clip=0.5", "training.dp_sgd.target_epsilon=50",
                                      "training.dp_sgd.target_delta=1e-5"])
    with pytest.raises(ConfigError, match="'dp-sgd' cannot serve a stream of deletion requests"):
        make_plan(config)


def test_a_config_without_requests_keeps_its_run_id():
    plain = load_config(QUICKSTART)
    assert "requests" not in plain.to_dict()
    stream = load_config(QUICKSTART, ["requests.num_requests=1"])
    assert stream.to_dict()["requests"]["num_requests"] == 1 and run_id(stream) != run_id(plain)


# -- one request is the single run -----------------------------------------------------------


def final_theta(monkeypatch):
    """The model's theta at every test pass of the runs that follow (one per run, or per request)."""
    seen = []
    test = Trainer.test

    def recording_test(self):
        seen.append(self.model.theta.detach().clone())
        return test(self)

    monkeypatch.setattr(Trainer, "test", recording_test)
    return seen


@pytest.mark.parametrize("name, overrides", METHODS)
def test_a_stream_of_one_request_is_the_single_run_bit_for_bit(name, overrides, tmp_path, session_checkpoints,
                                                               monkeypatch):
    thetas = final_theta(monkeypatch)
    single = config_of(overrides, tmp_path / "single", session_checkpoints, name)
    stream = config_of(overrides + ["requests.num_requests=1"], tmp_path / "stream", session_checkpoints, name)
    a = run(single, None, resolve_device("cpu"), Console(quiet=True))
    b = run(stream, None, resolve_device("cpu"), Console(quiet=True))
    assert torch.equal(thetas[0], thetas[1])
    # The forgetting metrics measured after unlearning (eval/...) are compared apart.
    rows_a = [row for row in rows_of(tmp_path / "single" / a["run_id"]) if not any(k.startswith("eval/") for k in row)]
    rows_b = [row for row in rows_of(tmp_path / "stream" / b["run_id"]) if not any(k.startswith("eval/") for k in row)]
    assert a["evaluation"]["accuracy"] == b["evaluation"]["accuracy"]
    *trained, record = rows_b
    assert record["request"] == 1 and record["request_size"] == 360 and record["deleted_so_far"] == 360
    tagged = [row for row in trained if row.pop("request", None) == 1]
    assert len(tagged) == len(trained) - 1  # all but the loaded model's Val (Train) row
    assert trained == rows_a  # every metric, every float, in the same order
    assert b["certificate"] == a["certificate"]
    test_rows = [row for row in rows_a if "Test_accuracy" in row]
    assert record["test_accuracy"] == test_rows[-1]["Test_accuracy"]


# -- nothing deleted is read after its request -----------------------------------------------


@pytest.mark.parametrize("name, overrides", METHODS)
def test_no_deleted_example_is_read_after_its_request(name, overrides, tmp_path, session_checkpoints, monkeypatch):
    """Before request r is set up, every example deleted so far is overwritten with NaN in
    the run's data: one read of it by a noisy or fine-tuning step would make that step's
    loss (and the model) NaN. The forget-so-far evaluation reads them on purpose, and so
    shows that the poison is where the deleted examples are."""
    views = []
    build = stream_run.request_data

    def poisoned(data, schedule, r):
        gone = torch.as_tensor(schedule.deleted_through(r))
        data.forget.x[gone] = float("nan")
        view = build(data, schedule, r)
        views.append((r, view, schedule, data.indices))
        return view

    monkeypatch.setattr(stream_run, "request_data", poisoned)
    # A non-finite training loss or model would end the run (DivergedError): only the
    # forget-so-far evaluation may meet the poison, and it reads it on purpose.
    strict = trainer_module.require_finite

    def lenient_on_forget(where, advice, *tensors, **values):
        if "'Forget" not in where:
            strict(where, advice, *tensors, **values)

    monkeypatch.setattr(trainer_module, "require_finite", lenient_on_forget)
    # The attacks after unlearning would fit on the poison (NaN features): not measured here.
    no_attacks = ["evaluation.mia.svc.enabled=false", "evaluation.mia.threshold.enabled=false"]
    config = config_of(overrides + ["requests.sizes=[100, 200, 60]"] + no_attacks, tmp_path, session_checkpoints,
                       name)
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    rows = rows_of(tmp_path / summary["run_id"])
    steps = [row for row in rows if "loss" in row]
    assert len(steps) == sum(row["steps"] for row in summary["requests"]) > 0
    assert all(np.isfinite(row["loss"]) for row in steps)
    for r in (1, 2, 3):
        assert all(np.isfinite(row["Val (Unlearn)_loss"]) for row in rows if row.get("request") == r
                   and "Val (Unlearn)_loss" in row)
        assert all(np.isnan(float(row["Forget (Unlearn)_loss"])) for row in rows if row.get("request") == r
                   and "Forget (Unlearn)_loss" in row)
    # The views in the official split's numbering: D_r and the deleted set partition train.
    for r, view, schedule, original in views:
        deleted = set(original.forget[torch.as_tensor(schedule.deleted_through(r))].tolist())
        retained = view.indices.retain.tolist()
        assert len(retained) == len(view.retain) == len(original.train) - len(deleted)
        assert deleted.isdisjoint(retained) and set(view.indices.forget.tolist()) == deleted
        assert deleted | set(retained) == set(original.train.tolist())


# -- the certificates ------------------------------------------------------------------------


@pytest.mark.parametrize("name, overrides", METHODS[:3])
def test_each_request_logs_the_certificate_of_the_dry_run(name, overrides, tmp_path, session_checkpoints, capsys):
    config_overrides = overrides + ["requests.sizes=[100, 200, 60]", "requests.epochs=1"]
    path = tmp_path / f"{name}.yaml"
    config = config_of(config_overrides, tmp_path, session_checkpoints, name)
    path.write_text(json.dumps(config.to_dict()))
    assert run_main("--config", path, "--dry-run") == 0
    planned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["requests"]["plans"]
    assert run_main("--config", path, "--quiet") == 0
    summary = json.loads((tmp_path / run_id(config) / "summary.json").read_text())
    records = summary["requests"]
    assert [p["request"] for p in planned] == [r["request"] for r in records] == [1, 2, 3]
    for plan, record in zip(planned, records):
        for key in ("certified_epsilon", "certified_delta", "all_models_epsilon", "all_models_delta"):
            assert record[key] == plan[key], key
        assert record["noisy_steps"] == plan["noisy_steps"] and record["epochs"] == plan["epochs"] == 1
        assert record["steps"] == plan["budget_steps"] and record["retain_size"] == plan["retain_size"]
    # the composition grows with the requests and starts at the request's own certificate
    epsilons = [r["all_models_epsilon"] for r in records]
    assert epsilons == sorted(epsilons) and epsilons[0] <= records[0]["certified_epsilon"]
    assert epsilons[-1] > epsilons[0]


def test_every_request_draws_its_own_noise_and_request_1_the_single_runs():
    config = load_config(QUICKSTART, ["requests.num_requests=3"])
    plan = make_plan(config)
    def first_draw(algorithm):
        xi = torch.zeros(algorithm.context.num_parameters)
        algorithm.context.noise.add_(xi, 1.0)
        return xi

    draws = []
    for request in plan.stream.requests:
        algorithm = attach_run(request.plan, torch.device("cpu"), seed_tag=stream_run.seed_tag(request.index))
        draws.append(first_draw(algorithm))
    single = attach_run(make_plan(load_config(QUICKSTART)), torch.device("cpu"))
    assert torch.equal(draws[0], first_draw(single))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


# -- request k for the audit -----------------------------------------------------------------


def test_request_k_starts_from_the_deployed_model_against_a_model_that_never_saw_the_deleted(
        tmp_path, session_checkpoints, monkeypatch):
    config = config_of(GC + ["requests.num_requests=3"], tmp_path, session_checkpoints, "audit")
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    run_dir = tmp_path / summary["run_id"]
    start = request_starting_points(run_dir, 2)
    deployed = torch.load(run_dir / "deployed" / "request_1.pt", weights_only=True)["state_dict"]
    assert torch.equal(start.deployed, torch.cat([t.reshape(-1) for t in deployed.values()]))
    assert start.plan.privacy.certified_epsilon == summary["requests"][1]["certified_epsilon"]
    assert start.config.unlearning.epochs == summary["requests"][1]["epochs"]
    assert len(start.data.retain) == summary["requests"][1]["retain_size"]
    assert torch.isfinite(start.retrained).all() and not torch.equal(start.retrained, start.deployed)
    # The retrained start never reads what requests 1 and 2 deleted: with those examples
    # overwritten by NaN it comes out the same.
    schedule = make_plan(config).stream.schedule
    load = get_datamodule

    def poisoned(config, device):
        data = load(config, device)
        data.forget.x[torch.as_tensor(schedule.deleted_through(2))] = float("nan")
        return data

    import src.audit.stream_request as audit

    monkeypatch.setattr(audit, "get_datamodule", poisoned)
    assert torch.equal(request_starting_points(run_dir, 2).retrained, start.retrained)
    monkeypatch.undo()
    # an adversarial audit never uses world B's start: it is not trained
    adversarial = request_starting_points(run_dir, 2, retrained=False)
    assert adversarial.retrained is None and torch.equal(adversarial.deployed, start.deployed)
    # request 1 starts from the pretrained model
    first = request_starting_points(run_dir, 1)
    pretrained = torch.load(make_plan(config).pretrained_description()["pretrained_path"],
                            weights_only=True)["state_dict"]
    assert torch.equal(first.deployed, torch.cat([t.reshape(-1) for t in pretrained.values()]))


# -- composition over requests, method by method ---------------------------------------------


def stream_plan(overrides, k=4):
    return make_plan(load_config(QUICKSTART, overrides + [f"requests.num_requests={k}"])).stream


def test_gradient_clipping_composes_renyi_dp_and_converts_once():
    stream = stream_plan(GC)
    eps_renyi = stream.requests[0].plan.privacy.details["epsilon_renyi_of_sigmas"]
    first, last = stream.requests[0].all_models, stream.requests[-1].all_models
    assert first.epsilon == stream.requests[0].plan.privacy.certified_epsilon  # one request: its own
    assert last.epsilon == pytest.approx(round_up(linear_rdp_to_dp(4 * eps_renyi, 1e-5)), rel=1e-10)  # printed up
    # (delta less the 4 requests' 1e-12 delta in which the float32 rounding bound may fail)
    assert last.delta == 1e-5 and 1.0 < last.epsilon < 4.0  # better than adding the epsilons


def test_output_perturbation_composes_gaussian_mechanisms():
    stream = stream_plan(OP)
    privacy = stream.requests[0].plan.privacy
    mu = 2 * 0.01 / privacy.init_sigma  # sensitivity 2 C0 over the sigma drawn
    assert stream.requests[-1].all_models.epsilon == gaussian_composition([mu] * 4, 1e-5)[0]
    # a single request: the exact Gaussian epsilon at the target delta, below the classical calibration's
    assert stream.requests[0].all_models.epsilon < privacy.certified_epsilon


@pytest.mark.parametrize("model_clip, rule", [(0.01, "basic composition"), (0.001, "Gaussian composition")])
def test_model_clipping_composes_the_last_noisy_step_whose_input_lies_in_the_ball(model_clip, rule):
    """Whatever the model before it, a noisy step with the noise after the projection
    starts from the R-ball: its output is a Gaussian mechanism with sensitivity 2R. The
    smaller of that composition and the basic one is kept."""
    overrides = CC + [f"unlearning.contractive_coefficients.model_clip={model_clip}"]
    config, _, algorithm, model, x, y = setup_one(overrides)
    with torch.no_grad():
        model.theta.normal_(0, 100.0)  # far outside every ball
    algorithm.context.noise.add_ = lambda theta, sigma: None  # no noise: the projection alone
    algorithm.noisy_step(model, x, y, 0)
    assert model.norm() <= model_clip * (1 + 1e-6)
    stream = stream_plan(overrides)
    radius = 2 * model_clip / 0.01
    assert stream.requests[0].plan.privacy.details["last_step_radius"] == pytest.approx(radius, rel=1e-15)
    composed = stream.requests[-1].all_models
    gaussian, _ = gaussian_composition([radius] * 4, 1e-5)
    basic = sum(r.plan.privacy.certified_epsilon for r in stream.requests)
    assert composed.epsilon == min(gaussian, basic) and composed.rule.startswith(rule)


def test_model_clipping_with_noise_before_the_projection_has_no_last_step_bound_at_one_step():
    """Step 1 starts in the C0-ball, not the R-ball: one noisy step has no such bound; from
    step 2 on the input lies in the R-ball, so a last step at 2 or later has one."""
    before = CC + ["unlearning.contractive_coefficients.noise_addition_after_projection=false",
                   "unlearning.contractive_coefficients.noise_addition_before_projection=true",
                   "unlearning.contractive_coefficients.grad_clip=1.0",
                   "unlearning.contractive_coefficients.model_clip=0.001"]
    one = stream_plan(before + ["unlearning.init_model_clip=0.001"])
    privacy = one.requests[0].plan.privacy
    assert privacy.noisy_steps == 1 and privacy.details["last_step_radius"] is None
    assert one.requests[-1].all_models.rule.startswith("basic composition")
    # C0 = 7: step 1's contraction (radius 2 (C0 + eta C1) / sigma) is weak, a second step is needed
    two = stream_plan(before).requests[0].plan.privacy
    assert two.noisy_steps == 2
    # plus each run's two float32 roundings before the noise (tiny_net: 3,985 parameters)
    rounding = 2 * (2.0**-24 * (0.001 + 1e-4) + 3985**0.5 * 2.0**-150)
    assert two.details["last_step_radius"] == pytest.approx((2 * (0.001 + 1e-4 * 1.0) + 2 * rounding) / 0.01,
                                                            rel=1e-12)


def test_retrain_composes_to_zero():
    assert stream_plan(RETRAIN).requests[-1].all_models.as_dict()["all_models_epsilon"] == 0.0


def setup_one(overrides):
    config = load_config(QUICKSTART, overrides)
    plan = make_plan(config)
    algorithm = attach_run(plan, torch.device("cpu"))
    model = build_model(config, plan.input_shape, "cpu")
    data = get_datamodule(config, "cpu")
    return config, plan, algorithm, model, data.retain.x[:128], data.retain.y[:128]


def test_console_bounds_are_rounded_up():
    from decimal import Decimal

    rng = np.random.default_rng(1)
    for value in list(rng.lognormal(0, 6, size=500)) + [1.0, 1e-5, 2.5943833805276073]:
        text = stream_run.fmt_up(value)
        assert Decimal(text) >= Decimal(repr(float(value)))
        assert len(Decimal(text).normalize().as_tuple().digits) <= 4
    assert stream_run.fmt_up(1.4600447628860875) == "1.461" and stream_run.fmt_up(None) == "-"


def test_the_mini_folder_is_the_generators_output_and_every_config_plans(capsys):
    import sys

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_request_stream_configs as generator
    finally:
        sys.path.pop(0)
    assert generator.main(["--check"]) == 0
    files = sorted((REPO / generator.FOLDER).glob("*.yaml"))
    assert len(files) == 13
    for path in files:
        config = load_config(path)
        assert config.seeds == 32 and (config.dataset.seed, config.global_seed) == (142, 1234)
        stream = make_plan(config).stream
        assert [r.sizes.forget for r in stream.requests] == [36] * 10
        assert all(r.all_models.valid and r.plan.privacy.certificate_valid for r in stream.requests)

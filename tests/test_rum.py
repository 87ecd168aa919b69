"""RUM on the bundled MNIST digits: the groups of the `mix` forget set and the shuffled
control, one group against the single method, step k's retain set, and certified RUM's
certificate against the request stream's composition (dry-run and run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import src.request_stream.rum as rum_run
from src.config import load_config, run_id
from src.data.forget_groups import group_sizes, mix_groups, ranked_groups, shuffled_groups
from src.data.forget_sets import memorization_group, mix_parts
from src.errors import ConfigError
from src.runner import make_plan, resolve_device, run
from src.training.trainer import Console
from src.unlearning.gradient_clipping import GradientClipping
from tests.conftest import QUICKSTART, run_main
from tests.test_request_stream import final_theta

MIX = ["dataset.forget.strategy=memorization", "dataset.forget.memorization.group=mix",
       "dataset.forget.memorization.subsample.n_models=4", "dataset.forget.memorization.subsample.epochs=1"]
RUM = ["unlearning.algorithm=rum", "unlearning.rum.order=[low, mid, high]"]
GC_STEP = "{algorithm: iteration, epochs: 1}"
# The quick start's unlearning keys are Gradient Clipping's (weight decay 750): an empirical
# method gets its own.
EMPIRICAL = ["unlearning.max_lr=0.01", "unlearning.weight_decay=0.0005"]
FT_STEP = "{algorithm: ft, max_lr: 0.01, weight_decay: 0.0005}"


def config_of(overrides, tmp_path, checkpoints, name="rum"):
    return load_config(QUICKSTART, overrides + [f"logs_dir={tmp_path}", f"checkpoints_dir={checkpoints}",
                                                "training.epochs=3", "unlearning.epochs=1", f"name={name}",
                                                "evaluation.mia.threshold.enabled=false"])


def steps(low, mid, high):
    return [f"unlearning.rum.steps={{low: {low}, mid: {mid}, high: {high}}}"]


# -- the groups --------------------------------------------------------------------------------


def test_mix_parts_are_the_first_third_of_high_and_mid_and_the_last_of_low():
    scores = np.array([0.9, 0.1, 0.5, 0.45, 0.8, 0.0, 0.55, 0.2, 0.95, 0.3, 0.35, 0.05, 0.52])
    parts = mix_parts(scores, 7, "closest_to_half")
    # high: the top 2 (0.95, 0.9); mid: closest to 0.5 not taken (0.5, then 0.52); low: the
    # lowest 7 - 4 = 3 of the rest (0.0, 0.05, 0.1)
    assert parts["high"].tolist() == [8, 0] and parts["mid"].tolist() == [2, 12]
    assert sorted(parts["low"].tolist()) == [1, 5, 11]
    assert memorization_group(scores, 7, "mix").tolist() == sorted([8, 0, 2, 12, 1, 5, 11])
    # the median rule (proxies): the median is 0.45, so mid = 0.45 itself, then 0.5 (0.05 away,
    # before 0.35 at 0.1 and 0.55 at 0.1)
    assert float(np.median(scores)) == pytest.approx(0.45)
    assert mix_parts(scores, 7, "closest_to_median")["mid"].tolist() == [3, 2]
    # a proxy oriented the other way round (high = less memorized) negated gives the same parts
    negated = mix_parts(-(-scores), 7, "closest_to_median")
    assert all(np.array_equal(negated[k], v) for k, v in mix_parts(scores, 7, "closest_to_median").items())


def test_groups_of_a_mix_forget_set_are_its_parts_and_others_are_ranked():
    rng = np.random.default_rng(3)
    train_scores = rng.uniform(-0.1, 1.0, 200)
    forget_in_train = memorization_group(train_scores, 30, "mix")  # ascending train positions
    groups = mix_groups(train_scores, forget_in_train, "closest_to_half")
    parts = mix_parts(train_scores, 30, "closest_to_half")
    for name in ("low", "mid", "high"):
        assert sorted(forget_in_train[groups[name]].tolist()) == sorted(parts[name].tolist())
    assert {k: len(v) for k, v in groups.items()} == group_sizes(30) == {"low": 10, "mid": 10, "high": 10}
    # ranked: the lowest, middle and top of the forget set's own scores
    ranked = ranked_groups(np.array([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0]))
    assert (ranked["low"].tolist(), ranked["mid"].tolist(), ranked["high"].tolist()) == ([1, 4, 5], [2, 3], [0, 6])


def test_the_shuffled_control_deals_the_same_examples_into_groups_of_the_same_sizes():
    groups = {"low": np.arange(0, 40), "mid": np.arange(40, 70), "high": np.arange(70, 100)}
    shuffled = shuffled_groups(groups, seed=5)
    assert list(shuffled) == list(groups) and [len(v) for v in shuffled.values()] == [40, 30, 30]
    assert np.array_equal(np.sort(np.concatenate(list(shuffled.values()))), np.arange(100))
    assert not np.array_equal(shuffled["high"], groups["high"])  # the grouping is destroyed
    again = shuffled_groups(groups, seed=5)
    assert all(np.array_equal(again[k], shuffled[k]) for k in groups)  # seeded


# -- the config --------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["unlearning.algorithm=rum"], r"unlearning.rum: required"),
    (RUM, r"unlearning.rum.steps: required key is missing"),
    (RUM + ["unlearning.rum.order=[low, high]"] + steps("{algorithm: ft}", "{algorithm: ft}", "{algorithm: ft}"),
     "order must list low, mid and high once each"),
    (RUM + ["unlearning.rum.steps={low: {algorithm: ft}}"], "one step for each group"),
    (RUM + steps("{algorithm: ft}", "{algorithm: ft, max_lr: -1}", "{algorithm: ft}"),
     r"unlearning.rum.steps.mid.*max_lr"),
    (RUM + steps("{algorithm: ft}", "{algorithm: rum}", "{algorithm: ft}"), "cannot be a step of RUM"),
])
def test_a_rum_config_is_checked_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(load_config(QUICKSTART, overrides))


# -- runs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, extra", [("neggrad_plus", EMPIRICAL), ("iteration", [])])
def test_rum_of_one_group_is_that_single_method(method, extra, tmp_path, session_checkpoints, monkeypatch):
    thetas = final_theta(monkeypatch)
    single = config_of([f"unlearning.algorithm={method}"] + extra, tmp_path / "single", session_checkpoints)
    one = config_of(["unlearning.algorithm=rum", "unlearning.rum.order=[all]",
                     f"unlearning.rum.steps={{all: {{algorithm: {method}}}}}"] + extra,
                    tmp_path / "rum", session_checkpoints)
    a = run(single, None, resolve_device("cpu"), Console(quiet=True))
    b = run(one, None, resolve_device("cpu"), Console(quiet=True))
    assert len(thetas) == 2 and torch.equal(thetas[0], thetas[1])
    assert a["evaluation"]["accuracy"] == b["evaluation"]["accuracy"]
    assert a["test_accuracy"] == b["test_accuracy"]
    for key in ("certified_epsilon", "certified_delta", "certificate_valid"):
        assert a["certificate"][key] == b["certificate"][key], key
    from src.data.datamodule import get_datamodule

    assert b["rum"]["groups"]["all"] == get_datamodule(one, "cpu").indices.forget.tolist()  # logged, in order


def test_step_k_retains_everything_but_the_groups_processed_so_far(tmp_path, session_checkpoints, monkeypatch):
    views = []
    build = rum_run.step_view

    def recording(data, schedule, k):
        view = build(data, schedule, k)
        views.append((k, view, data.indices))
        return view

    monkeypatch.setattr(rum_run, "step_view", recording)
    config = config_of(MIX + RUM + EMPIRICAL + steps("{algorithm: ft}", "{algorithm: nothing}",
                                                     "{algorithm: neggrad_plus}"), tmp_path, session_checkpoints)
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    groups = summary["rum"]["groups"]
    assert list(groups) == ["low", "mid", "high"] and [len(g) for g in groups.values()] == [120, 120, 120]
    original = views[0][2]
    assert sorted(sum(groups.values(), [])) == sorted(original.forget.tolist())
    processed = set()
    for (k, view, _), group in zip(views, ["low", "mid", "high"]):
        processed |= set(groups[group])
        retained = view.indices.retain.tolist()
        assert len(retained) == len(view.retain) == len(original.train) - len(processed)
        assert set(retained) == set(original.train.tolist()) - processed  # the later groups stay in
        assert view.indices.forget.tolist() == groups[group] and len(view.forget) == len(groups[group])
        # the data themselves, not only the indices
        assert torch.equal(torch.sort(view.forget.y).values,
                           torch.sort(torch.as_tensor([int(y) for y in _labels(groups[group])])).values)
    # metrics on the whole forget set after every step; the `nothing` step changes nothing
    records = summary["rum"]["steps"]
    assert [r["rum_group"] for r in records] == ["low", "mid", "high"]
    assert records[1]["forget_accuracy"] == records[0]["forget_accuracy"]
    assert records[-1]["forget_accuracy"] == summary["evaluation"]["accuracy"]["forget"]
    # the groups are the memorization mix's parts: mean memorization high > mid > low
    from src.data.datamodule import get_datamodule
    from src.request_stream.rum import group_scores

    data = get_datamodule(config, "cpu")
    scores = group_scores(config, data, "cpu")
    position = {int(t): i for i, t in enumerate(data.indices.train.tolist())}
    means = {g: np.mean([scores[position[i]] for i in groups[g]]) for g in groups}
    assert means["high"] > means["mid"] > means["low"]


def _labels(indices):
    from src.data.mnist_dataset import MNIST5k

    raw = MNIST5k.load(load_config(QUICKSTART), "cpu")
    return raw.train_y[torch.as_tensor(indices)].tolist()


def test_certified_rum_is_the_stream_composition_and_its_dry_run_is_its_run(tmp_path, session_checkpoints, capsys):
    config = config_of(MIX + RUM + steps(GC_STEP, GC_STEP, "{algorithm: iteration, epochs: 2}"), tmp_path,
                       session_checkpoints, "certified")
    plan = make_plan(config)
    rum = plan.stream
    assert rum.as_dict()["certified"] and plan.privacy.certificate_valid
    # the request stream of the same sizes, with the same per-request budgets, composes alike
    stream = make_plan(config_of(["requests.sizes=[120, 120, 120]", "requests.epochs=1"], tmp_path,
                                 session_checkpoints)).stream
    step_plans = [s.plan.privacy for s in rum.steps]
    for k, (step, request) in enumerate(zip(rum.steps, stream.requests), 1):
        assert step.sizes == request.sizes
        composed = GradientClipping.compose_certificates(step_plans[:k], 1e-5)
        assert step.all_models == composed
        if k < 3:  # same budget as the stream's request: the same certificate and composition
            assert step.plan.privacy.certified_epsilon == request.plan.privacy.certified_epsilon
            assert step.all_models == request.all_models
    # the released model: the last step's certificate; every step's model together: the composition
    assert plan.privacy.certified_epsilon == step_plans[-1].certified_epsilon
    assert plan.privacy.details["all_models_epsilon"] == rum.steps[-1].all_models.epsilon > \
        plan.privacy.certified_epsilon
    # dry-run, then run: the same numbers
    path = tmp_path / "certified.yaml"
    path.write_text(json.dumps(config.to_dict()))
    assert run_main("--config", path, "--dry-run") == 0
    planned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert planned["rum"]["certified"] and "certified for the whole forget set" in planned["rum"]["certificate"]
    assert run_main("--config", path, "--quiet") == 0
    summary = json.loads((tmp_path / run_id(config) / "summary.json").read_text())
    for plan_step, record in zip(planned["rum"]["steps"], summary["rum"]["steps"]):
        for key in ("certified_epsilon", "certified_delta", "all_models_epsilon", "all_models_delta",
                    "noisy_steps"):
            assert record[key] == plan_step[key], key
    for key in ("certified_epsilon", "certified_delta", "certificate_valid"):
        assert summary[key] == planned[key], key
    assert summary["certificate_valid"] is True


@pytest.mark.parametrize("low, reason", [(FT_STEP, "'ft', an empirical method"),
                                         ("{algorithm: nothing}", "'nothing', which leaves the group")])
def test_one_empirical_step_makes_the_run_uncertified(low, reason, tmp_path, session_checkpoints, capsys):
    config = config_of(MIX + RUM + steps(low, GC_STEP, GC_STEP), tmp_path, session_checkpoints, "mixed")
    plan = make_plan(config)
    assert not plan.privacy.certificate_valid and plan.privacy.certified_epsilon is None
    reasons = plan.stream.uncertified_because
    assert len(reasons) == 1 and reasons[0].startswith(f"step 1 (low group) runs {reason}")
    path = tmp_path / "mixed.yaml"
    path.write_text(json.dumps(config.to_dict()))
    assert run_main("--config", path, "--dry-run") == 0
    planned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert planned["certified_epsilon"] is None and planned["rum"]["certificate"].startswith("UNCERTIFIED: step 1")
    assert run_main("--config", path) == 0
    out = capsys.readouterr().out
    assert "WARNING: this RUM run is uncertified: step 1 (low group)" in out
    summary = json.loads((tmp_path / run_id(config) / "summary.json").read_text())
    assert summary["certificate_valid"] is False and summary["certified_epsilon"] is None


def test_the_published_recipes_and_the_certified_rum_ship_as_configs():
    from tests.conftest import REPO

    def planned(name):
        return make_plan(load_config(REPO / "configs" / name)).stream.steps

    s = planned("rum_mnist5k_nothing_ft_salun.yaml")
    assert [(x.group, x.algorithm) for x in s] == [("low", "nothing"), ("mid", "ft"), ("high", "salun")]
    assert [(x.plan.config.unlearning.epochs, x.plan.config.unlearning.max_lr) for x in s[1:]] == [(10, 0.1), (5, 0.1)]
    s = planned("rum_mnist5k_neggrad_plus_x3.yaml")
    assert [(x.plan.config.unlearning.neggrad_plus.alpha, x.plan.config.unlearning.max_lr,
             x.plan.config.unlearning.epochs) for x in s] == [(0.99, 0.01, 5), (0.97, 0.01, 5), (0.97, 0.001, 10)]
    certified = make_plan(load_config(REPO / "configs" / "rum_mnist5k_certified.yaml"))
    assert certified.privacy.certificate_valid and certified.stream.as_dict()["certified"]


def test_the_rum_folder_is_the_generators_output_and_every_config_plans():
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("make_rum_configs", REPO / "tools" / "make_rum_configs.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.main(["--check"]) == 0
    files = sorted((REPO / generator.FOLDER).glob("*.yaml"))
    assert len(files) == 16 * 5
    certified = 0
    for path in files:
        plan = make_plan(load_config(path))
        if path.name.startswith("rum-gc3"):
            certified += 1
            assert plan.privacy.certificate_valid and plan.privacy.certified_epsilon <= 1.0
        elif path.name.startswith("rum-"):
            assert not plan.privacy.certificate_valid and plan.stream.uncertified_because
    assert certified == 5


def test_the_rum_table_pairs_seeds_and_takes_t_intervals():
    from src.figures.rum import paired, table

    values = {"rum-ng3": {(1, 1): {"tow": 0.9, "tow_mia": 0.8}, (2, 2): {"tow": 0.8, "tow_mia": 0.7},
                          (3, 3): {"tow": 0.7, "tow_mia": 0.9}},
              "rum-ng3-shuffled": {(1, 1): {"tow": 0.8, "tow_mia": 0.8}, (2, 2): {"tow": 0.7, "tow_mia": 0.7},
                                   (4, 4): {"tow": 0.1, "tow_mia": 0.1}}}
    (row,) = paired(values)
    assert row["seeds"] == 2 and row["tow"][0] == pytest.approx(0.1) and row["tow"][1] == pytest.approx(0.0)
    rows = table(values)
    assert rows[0]["tag"] == "rum-ng3" and rows[0]["tow"][0] == pytest.approx(0.8)
    # t(0.975, 2) * sd / sqrt(3), sd = 0.1
    assert rows[0]["tow"][1] == pytest.approx(4.302652729911275 * 0.1 / 3 ** 0.5, rel=1e-9)
    assert rows[0]["forget_low"] is None


def test_a_run_on_a_mix_forget_set_logs_its_parts(tmp_path, session_checkpoints):
    config = config_of(MIX + EMPIRICAL + ["unlearning.algorithm=ft"], tmp_path, session_checkpoints, "mixft")
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    groups = summary["evaluation"]["forget_groups"]
    assert [len(groups["indices"][g]) for g in ("low", "mid", "high")] == [120, 120, 120]
    from src.data.datamodule import get_datamodule

    data = get_datamodule(config, "cpu")
    assert sorted(sum(groups["indices"].values(), [])) == sorted(data.indices.forget.tolist())
    # the parts' accuracies average to the forget accuracy (equal sizes)
    mean = np.mean([groups["accuracy"][g] for g in ("low", "mid", "high")])
    assert mean == pytest.approx(summary["evaluation"]["accuracy"]["forget"], abs=1e-12)
    # a random forget set has no parts
    plain = run(config_of(EMPIRICAL + ["unlearning.algorithm=ft"], tmp_path, session_checkpoints, "plainft"), None,
                resolve_device("cpu"), Console(quiet=True))
    assert "forget_groups" not in plain["evaluation"]

"""langevin_runs/: the generated configs are up to date and plan the K they budget for, and
the Figure 3 module aggregates what the runs logged."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from src.config import load_config
from tests.conftest import REPO

FOLDER = REPO / "langevin_runs"
GENERATOR = REPO / "tools" / "make_langevin_configs.py"


def generator():
    spec = importlib.util.spec_from_file_location("make_langevin_configs", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_configs_are_the_generator_s_output():
    assert generator().main(["--check", "--out", str(FOLDER)]) == 0


def strip_seed(data: dict) -> dict:
    data = dict(data)
    data.pop("global_seed"), data.pop("name")
    return data


GROUPS = sorted(p for p in FOLDER.rglob("*-g0.yaml"))
# One run each: deterministic (noiseless/) or one seed per point (burnin/).
SINGLES = sorted(p for mode in ("noiseless", "burnin") for p in FOLDER.rglob(f"{mode}/*.yaml"))


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: str(p.relative_to(FOLDER)))
def test_each_config_budgets_exactly_the_steps_its_plan_needs(path):
    from src.runner import make_plan

    config = load_config(path)
    plan = make_plan(config).privacy
    # no fine-tuning after the noisy phase (pnsgd: its epochs are passes over its J batches)
    per_epoch = plan.details.get("pnsgd_batches_per_epoch", 1)
    assert plan.noisy_steps == config.unlearning.epochs * per_epoch
    section = getattr(config.unlearning, config.unlearning.algorithm)
    assert plan.certified_epsilon <= section.epsilon_target
    if ("fig3a" in path.parts or "pnsgd" in path.parts) and config.unlearning.algorithm != "d2d":
        assert plan.noisy_steps == per_epoch  # the calibrated sigma certifies epsilon in one pass
    # the other seeds of the group differ only in their seed and name
    base = strip_seed(yaml.safe_load(path.read_text()))
    siblings = sorted(path.parent.glob(path.name.replace("-g0.yaml", "-g*.yaml")))
    assert len(siblings) >= 2
    for sibling in siblings:
        assert strip_seed(yaml.safe_load(sibling.read_text())) == base


@pytest.mark.parametrize("path", SINGLES, ids=lambda p: str(p.relative_to(FOLDER)))
def test_the_ceiling_and_burn_in_configs_plan_what_they_say(path):
    from src.runner import make_plan

    config = load_config(path)
    plan = make_plan(config).privacy
    if "noiseless" in path.parts:  # noise-free gradient descent on the retain set, from zero, T steps
        assert config.unlearning.algorithm == "retrain" and plan.noisy_steps == 0
        post = config.post_unlearning
        assert (post.max_lr, post.weight_decay, post.lr_schedule, post.momentum) == (
            config.training.max_lr, config.training.weight_decay, "constant", 0.0)
        assert config.unlearning.epochs >= 300
    else:  # the learned chain after T steps: no unlearning step
        assert config.unlearning.algorithm == "langevin" and plan.noisy_steps == 0


# --- the figure --------------------------------------------------------------------------------

def fake_run(logs: Path, name: str, config_file: str, config: dict, rows: list, noisy_steps: int):
    run_dir = logs / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"finished": True, "run_id": name, "config_file": config_file,
                                                      "noisy_steps": noisy_steps}))


def test_figure_module_averages_the_request_rows_over_seeds(tmp_path):
    from src.figures import langevin as figure

    logs = tmp_path / "logs"
    for seed, (acc, learned) in enumerate(((0.8, 0.7), (0.6, 0.9))):
        config = {"dataset": {"name": "mnist_5k_3v8"}, "training": {"langevin": {"sigma": 0.1}},
                  "unlearning": {"algorithm": "langevin", "langevin": {"epsilon_target": 2}}}
        rows = [{"Test (Learned)_accuracy": learned}, {"loss": 1.0, "sigma_t": 0.2},
                {"request": 1, "request_size": 1, "request_steps": 1, "Test (Request)_accuracy": acc, "state_step": 1},
                {"Test (Langevin Retrain)_accuracy": 0.5}]
        fake_run(logs, f"a{seed}", f"langevin_runs/x/fig3a/lmc-g{seed}.yaml", config, rows, 1)
    config = {"dataset": {"name": "mnist_5k_3v8"}, "training": {"langevin": {"sigma": 0.1}},
              "unlearning": {"algorithm": "langevin", "langevin": {"epsilon_target": 1, "requests": [2, 2]}}}
    rows = [{"request": 1, "request_size": 2, "request_steps": 5, "Test (Request)_accuracy": 0.9, "state_step": 5},
            {"request": 2, "request_size": 2, "request_steps": 7, "Test (Request)_accuracy": 0.7, "state_step": 12}]
    fake_run(logs, "b0", "langevin_runs/x/fig3b/lmc-nr_2-g0.yaml", config, rows, 12)
    fake_run(logs, "c0", "elsewhere/run.yaml", config, rows, 12)  # not in a figure folder: left out
    out = tmp_path / "out"
    assert figure.main(["--logs", str(logs), "--out", str(out), "--prefix", "t_"]) == 0
    assert (out / "t_langevin_figure3.png").stat().st_size > 0
    table = list(csv.DictReader(open(out / "t_langevin_figure3.csv")))
    unlearned = [r for r in table if r["series"] == "Langevin unlearning (K=1)"]
    assert [(r["x"], float(r["mean"]), r["runs"]) for r in unlearned] == [("2", pytest.approx(0.7), "2")]
    assert float(unlearned[0]["std"]) == pytest.approx(0.1414214, rel=1e-5)
    learned = [r for r in table if r["series"] == "Langevin learning"]
    assert float(learned[0]["mean"]) == pytest.approx(0.8)
    steps = [(r["x"], r["mean"]) for r in table if r["figure"] == "fig3b-steps" and r["series"].startswith("Langevin")]
    assert steps == [("2", "5"), ("4", "12")]


def test_the_paper_s_numbers_are_drawn_beside_ours_and_the_subset_is_named(tmp_path):
    from src.figures import langevin as figure

    logs = tmp_path / "logs"
    config = {"dataset": {"name": "mnist_5k_3v8"}, "training": {"langevin": {"sigma": 0.1}},
              "unlearning": {"algorithm": "langevin", "langevin": {"epsilon_target": 0.5}}}
    rows = [{"request": 1, "request_size": 1, "request_steps": 1, "Test (Request)_accuracy": 0.6, "state_step": 1}]
    fake_run(logs, "a0", "langevin_runs/x/fig3a/lmc-g0.yaml", config, rows, 1)
    out = tmp_path / "out"
    assert figure.main(["--logs", str(logs), "--out", str(out)]) == 0
    table = list(csv.DictReader(open(out / "langevin_figure3.csv")))
    paper = {(r["series"], r["x"]): r for r in table if r["series"].startswith("published")}
    # MNIST 3 vs 8, Figure 3a of the paper: 0.679 +- 0.070 (Langevin, epsilon 0.05), D2D I = 1 at epsilon 5: 0.824
    assert float(paper[("published: Langevin (K=1)", "0.05")]["mean"]) == pytest.approx(0.679, abs=5e-4)
    assert float(paper[("published: Langevin (K=1)", "0.05")]["std"]) == pytest.approx(0.070, abs=5e-3)
    assert paper[("published: Langevin (K=1)", "0.05")]["runs"] == "100"
    assert float(paper[("published: D2D (I=5)", "5")]["mean"]) == pytest.approx(0.910, abs=5e-4)
    assert float(paper[("published: D2D (I=1)", "5")]["mean"]) == pytest.approx(0.824, abs=5e-4)
    assert "full MNIST" in figure.SUBSET_NOTE["mnist_5k_3v8"]
    assert figure.main(["--logs", str(logs), "--out", str(out), "--published", "none"]) == 0
    assert not [r for r in csv.DictReader(open(out / "langevin_figure3.csv")) if r["series"].startswith("published")]


def test_the_published_K_of_figure_3c_are_the_accountant_s():
    """MNIST (n = 11,982) and the ten CIFAR-10 classes (n = 50,000) were stored by the final
    formulas: our accountant gives the same K with the original main_lmc search."""
    from src.privacy.langevin import Chain, smallest_steps

    published = json.loads((REPO / "tests" / "data" / "langevin_published.json").read_text())["datasets"]
    for name, n, smooth, M in (("MNIST", 11982, 0.25, 1.0), ("CIFAR10_MULTI", 50000, 1.0, 2.0)):
        m = 1e-6 * n
        for sigma, K in published[name]["fig3c"]["K"].items():
            chain = Chain(n=n, m=m, eta=1 / (smooth + m), M=M, sigma=float(sigma))
            ours = smallest_steps(1.0, 100, chain, 1 / n, alpha_range=(1.0, 1e4), step_lattice=10).steps
            assert ours == K, (name, sigma)


def test_figure_module_says_why_nothing_could_be_drawn(tmp_path, capsys):
    from src.figures import langevin as figure

    (tmp_path / "logs").mkdir()
    assert figure.main(["--logs", str(tmp_path / "logs")]) == 2
    assert "no finished Langevin or D2D runs" in capsys.readouterr().err


def test_the_accountant_curve_of_figure_3c_passes_through_the_runs_K():
    from src.figures.langevin import LangevinRun, accountant_curve
    from src.runner import make_plan

    path = FOLDER / "mini-mnist5k" / "fig3c" / "lmc-sigma_0.1-g0.yaml"
    config = load_config(path)
    plan = make_plan(config)
    data = yaml.safe_load(path.read_text())
    run = LangevinRun("fig3c", "mnist_5k_3v8", "langevin", data, {"plan": plan.as_dict()})
    sigmas = [0.05, 0.1, 0.2]
    curve = accountant_curve(run, sigmas)
    assert curve[1] == plan.privacy.noisy_steps == config.unlearning.epochs
    assert curve[0] > curve[1] > curve[2]  # more noise, fewer steps


def test_the_modes_figure_draws_each_mode_and_the_paper_s_utility_numbers(tmp_path):
    from src.figures import langevin_modes as figure

    logs = tmp_path / "logs"
    data = {"dataset": {"name": "mnist_5k_3v8", "batch_size": 50000}, "training": {"langevin": {"sigma": 0.1},
                                                                                  "epochs": 500}}

    def request(size, acc, steps=1):
        return {"request": 1, "request_size": size, "request_steps": steps, "Test (Request)_accuracy": acc,
                "state_step": steps}

    for seed, acc in enumerate((0.8, 0.6)):
        config = {**data, "unlearning": {"algorithm": "langevin", "langevin": {"epsilon_target": 0.5}}}
        fake_run(logs, f"u{seed}", f"langevin_runs/x/utility/lmc-S_8-g{seed}.yaml", config, [request(8, acc)], 1)
    config = {**data, "unlearning": {"algorithm": "retrain"}}
    fake_run(logs, "n0", "langevin_runs/x/noiseless/retrain-S_8.yaml", config, [], 0)
    summary = json.loads((logs / "n0" / "summary.json").read_text())
    (logs / "n0" / "summary.json").write_text(json.dumps({**summary, "test_accuracy": 0.95,
                                                          "plan": {"split_sizes": {"forget": 8}}}))
    config = {**data, "unlearning": {"algorithm": "d2d", "d2d": {"epsilon_target": 1, "requests": [1, 1]}}}
    rows = [request(1, 0.7), {**request(1, 0.5), "request": 2}]
    fake_run(logs, "s0", "langevin_runs/x/sequence/d2d-singles_2-g0.yaml", config, rows, 2)
    config = {"dataset": data["dataset"], "training": {"langevin": {"sigma": 0.1}, "epochs": 50},
              "unlearning": {"algorithm": "langevin", "langevin": {"steps": 0}}}
    fake_run(logs, "b0", "langevin_runs/x/burnin/lmc-sigma_0.1-T_50.yaml", config,
             [{"Test (Learned)_accuracy": 0.75}, request(1, 0.75, 0)], 0)
    out = tmp_path / "out"
    assert figure.main(["--logs", str(logs), "--out", str(out)]) == 0
    table = list(csv.DictReader(open(out / "langevin_modes.csv")))
    got = {(r["mode"], r["series"], r["x"]): (float(r["mean"]), r["runs"]) for r in table}
    assert got[("utility-S", "Langevin, epsilon 0.5", "8")] == (pytest.approx(0.7), "2")
    assert got[("utility-epsilon", "Langevin, S = 8", "0.5")] == (pytest.approx(0.7), "2")
    assert got[("utility-S", "noise-free retraining (ceiling)", "8")] == (pytest.approx(0.95), "1")
    assert got[("sequence-requests", "D2D, one example per request", "2")] == (pytest.approx(0.5), "1")
    assert got[("burnin-T", "sigma 0.1", "50")] == (pytest.approx(0.75), "1")
    # the paper's MNIST numbers: S = 1000 at epsilon 1 (0.866 over 100 chains), the noise-free ceiling at S = 1
    assert got[("utility-S", "published: Langevin, epsilon 1", "1000")][0] == pytest.approx(0.866, abs=1e-3)
    assert got[("utility-S", "published: noise-free retraining", "1")][0] == pytest.approx(0.911, abs=1e-3)
    # the companion paper's noisy SGD after one epoch of unlearning, MNIST, b = 128, epsilon 0.5
    assert got[("pnsgd-epsilon", "published: noisy SGD, b = 128", "0.5")] == (pytest.approx(0.894, abs=1e-3), "100")

"""Langevin unlearning and D2D audited between the worlds their certificates compare (issue
23, item 1): N chains from the method's initial law trained on D and unlearned (world A)
against N chains from the same law trained on D_r for as many steps (world B), on the
bundled MNIST digits of langevin_runs/mini-mnist5k."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml

from src import catalogue  # noqa: F401  (fills the registries)
from src.audit import convex
from src.audit.__main__ import EXCEEDED
from src.audit.__main__ import main as audit_main
from src.audit.chains import chain_seeds
from src.config import load_config
from src.data.batches import make_generator
from src.data.datamodule import get_datamodule
from src.entropy import randomness
from src.privacy import d2d as d2d_accountant
from src.privacy.rounding import float32_at_least
from src.runner import attach_run, make_plan
from src.seeds import derive_seed
from src.training.langevin import ChainConstants, initial_point_, langevin_step_, objective_grad
from src.training.trainer import Console, Trainer, build_model, pretrain
from tests.conftest import REPO

FIG3A = REPO / "langevin_runs" / "mini-mnist5k" / "fig3a"
LANGEVIN = FIG3A / "lmc-K_1-eps_0.5-g0.yaml"
D2D = FIG3A / "d2d-I_1-eps_0.5-g0.yaml"
# A shorter Langevin training keeps the tests quick: the certificate holds at any T.
D2D_SEQUENCE = REPO / "langevin_runs" / "mini-mnist5k" / "fig3b" / "d2d-f_1-g0.yaml"
SHORT = ["training.epochs=40", "unlearning.langevin.retrain_reference=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """The chains' small steps gain nothing from a second thread on a shared machine, and
    waiting threads that spin cost minutes there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _NoLog:
    def log(self, row):
        pass

    def flush(self):
        pass


def run_audit(capsys, config, out, *args):
    # one thread: the chains' small steps gain nothing from a second on a shared machine
    code = audit_main(["--config", str(config), "--out", str(out), "--quiet", "--threads", "1", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def only_audit(out) -> dict:
    (directory,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((directory / "audit.json").read_text())


@pytest.mark.parametrize("config, overrides", [(LANGEVIN, SHORT), (D2D, [])], ids=["langevin", "d2d"])
def test_langevin_and_d2d_are_audited_between_their_own_chains(config, overrides, tmp_path, capsys):
    """No refusal (the old audit refused both): one printed line, an audit.json naming the
    two worlds, every chain's scores, and a lower bound at most the certificate."""
    args = ["--chains", 24, *[x for o in overrides for x in ("--override", o)]]
    code, lines, err = run_audit(capsys, config, tmp_path / "out", *args)
    assert code == 0, err
    assert len(lines) == 1 and lines[0].startswith("certified epsilon 0.500, empirical lower bound")
    result = only_audit(tmp_path / "out")
    assert result["start"] == "chains" and result["chains_per_world"] == 24
    worlds = result["worlds"]
    assert "train split (D)" in worlds["world_A"] and "retain set (D_r)" in worlds["world_B"]
    assert worlds["training_steps"] == (40 if config == LANGEVIN else 500) and worlds["unlearning_steps"] == 1
    assert all(len(result["chain_scores"][w]["projection"]) == 24 for w in "AB")
    # the Gaussian-DP estimate on the 12 chains per world that never saw the direction
    assert result["gaussian_estimate"]["chains"] == [12, 12]
    assert result["lower_bound"] <= result["certified_epsilon"] == pytest.approx(0.5, abs=1e-5)
    assert result["exceeds_certificate"] is False


def test_a_folder_of_langevin_and_d2d_configs_gives_a_table_row_each(tmp_path, capsys):
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(D2D, folder / D2D.name)
    shutil.copy(D2D_SEQUENCE, folder / "d2d-sequence.yaml")  # refused alone, left out of a folder
    langevin = yaml.safe_load(LANGEVIN.read_text())
    langevin["training"]["epochs"] = 40  # quicker; D2D keeps its 500 steps (it must reach the optimum)
    (folder / LANGEVIN.name).write_text(yaml.safe_dump(langevin))
    code = audit_main(["--folder", str(folder), "--chains", "16", "--out", str(tmp_path / "out"), "--quiet",
                       "--threads", "1"])
    table = (tmp_path / "out" / "tightness-configs.md").read_text()
    assert code == 0
    rows = [line for line in table.splitlines() if line.startswith("| langevin") or line.startswith("| d2d")]
    assert len(rows) == 2 and all("| 0.500 |" in row and "| 16 |" in row for row in rows)
    assert "d2d-sequence" not in table
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    for row in rows:
        cells = dict(zip(header, [c.strip() for c in row.strip("|").split("|")]))
        assert float(cells["lower bound"]) <= float(cells["certified epsilon"])
        assert cells["challenge score"] != "-"  # closeness to the method's own retraining (world B)
    for path in (tmp_path / "out").glob("*/audit.json"):
        c = json.loads(path.read_text())["closeness_to_retrain"]
        assert c["retrained_as"].startswith("world B") and c["models_per_side"] == 16
        assert 0 <= c["forgetting_quality"] <= 1 and len(c["example_epsilons"]) == 1  # fig3a deletes one example
        u, r = c["accuracy"]["unlearned"], c["accuracy"]["retrained"]
        expected = c["forgetting_quality"] * (u["retain"] / r["retain"]) * (u["test"] / r["test"])
        assert c["challenge_score"] == pytest.approx(expected, rel=1e-9)
    capsys.readouterr()


def test_a_bug_in_the_d2d_accountant_is_caught_exit_3(tmp_path, capsys, monkeypatch):
    """D2D's noise made 10^6 times smaller than its certificate needs (a bug in the
    accountant, not a weakened audit): the published models of the two worlds separate and
    the bound exceeds the certificate, exit status 3 (the honest noise passes:
    test_langevin_and_d2d_are_audited_between_their_own_chains)."""
    honest = d2d_accountant.secret_state_sigma
    monkeypatch.setattr(d2d_accountant, "secret_state_sigma", lambda *a, **k: honest(*a, **k) * 1e-6)
    code, lines, err = run_audit(capsys, D2D, tmp_path / "wrong", "--chains", 32)
    wrong = only_audit(tmp_path / "wrong")
    assert code == EXCEEDED and "CERTIFICATE EXCEEDED" in err
    assert wrong["exceeds_certificate"] and wrong["lower_bound"] > 1.0


def test_weakened_langevin_noise_is_seen_and_is_not_a_violation(tmp_path, capsys):
    """--noise-scale scales the chain's temperature (its initial law and every step's noise)
    and the unlearning noise: with a thousandth of it the worlds separate, the bound rises
    above the certificate, and exit status stays 0 (the certificate no longer applies)."""
    args = ["--chains", 32, "--noise-scale", 0.001, *[x for o in SHORT for x in ("--override", o)]]
    code, lines, err = run_audit(capsys, LANGEVIN, tmp_path / "weak", *args)
    weak = only_audit(tmp_path / "weak")
    assert code == 0 and weak["noise_scale"] == 0.001
    assert weak["exceeds_certificate"] and weak["lower_bound"] > weak["certified_epsilon"]


def _single_run_chain(config, data, seed, retain_only: bool):
    """One chain computed without the audit's vectorised path: the repository's single-model
    objective gradient and step, from the seed streams a single run with `seed` draws."""
    chain = ChainConstants.from_config(config, n=len(data.train))
    model = build_model(config, data.input_shape, "cpu")
    theta = model.theta
    generator = make_generator(derive_seed(seed, "langevin-training"), "cpu")
    initial_point_(theta, chain, generator)
    train = data.retain if retain_only else data.train
    for _ in range(chain.T):
        _, _, grad = objective_grad(model, [(train.x, train.y)], chain.m)
        langevin_step_(theta, grad, chain.eta, chain.noise_std, lambda: torch.randn(theta.shape, generator=generator))
    return model, chain


def test_world_b_is_the_chain_trained_on_the_retain_set_from_the_initial_law(tmp_path):
    """One chain of world B against a direct computation: the Langevin chain drawn from its
    initial law with the chain's seed, T steps on D_r, then K steps on D_r with the
    unlearning noise (float32-rounded up, from the chain's unlearning stream)."""
    config = load_config(LANGEVIN, SHORT)
    data = get_datamodule(config, "cpu")
    (seed,) = chain_seeds(config.global_seed, "B", 1)
    audited, steps = convex.world_outputs(config, data, "B", [seed], "cpu")
    model, chain = _single_run_chain(config, data, seed, retain_only=True)
    noise = randomness(False, derive_seed(seed, "unlearning-noise"), "cpu")
    theta = model.theta
    for _ in range(steps):
        _, _, grad = objective_grad(model, [(data.retain.x, data.retain.y)], chain.m)
        with torch.no_grad():
            theta.sub_(chain.eta * grad)
            theta.add_(noise.normal(theta.numel(), "cpu"), alpha=float32_at_least(chain.noise_std))
    assert steps == 1
    torch.testing.assert_close(audited[0], theta.detach(), rtol=0, atol=1e-4)
    # and not the chain trained on D: the forget example moved it by more than the tolerance
    on_d, _ = _single_run_chain(config, data, seed, retain_only=False)
    assert float((on_d.theta.detach() - theta.detach()).abs().max()) > 1e-3


def test_world_a_is_the_single_run_of_the_method_with_the_chains_seed():
    """One chain of world A against the real thing: the experiment's own Langevin training
    (trainer.pretrain) and unlearning (Trainer.unlearn) of the config with that global seed."""
    config = load_config(LANGEVIN, SHORT)
    data = get_datamodule(config, "cpu")
    (seed,) = chain_seeds(config.global_seed, "A", 1)
    audited, _ = convex.world_outputs(config, data, "A", [seed], "cpu")
    single = config.model_copy(update={"global_seed": seed})
    model = build_model(single, data.input_shape, "cpu")
    meta = pretrain(single, data, model, lambda row: None, Console(quiet=True))
    algorithm = attach_run(make_plan(single, data.sizes), "cpu", pretrained_meta=meta, data=data)
    Trainer(single, data, model, algorithm, _NoLog(), Console(quiet=True)).unlearn()
    torch.testing.assert_close(audited[0], model.theta.detach(), rtol=0, atol=1e-4)


def test_the_chains_start_from_the_initial_law_each_from_its_own_draw():
    """T = 0: the chains are their initial draws, N(init_mean, 2 sigma^2/m I), independent."""
    config = load_config(LANGEVIN, ["training.langevin.init_mean=0.3"])
    data = get_datamodule(config, "cpu")
    chain = ChainConstants.from_config(config, n=len(data.train))
    network = build_model(config, data.input_shape, "cpu")
    seeds = chain_seeds(0, "B", 256)
    draws = convex.train_chains(network, chain.__class__(**{**chain.__dict__, "T": 0}), seeds,
                                [(data.retain.x, data.retain.y)], "cpu").double()
    samples = draws.numel()  # 256 x 784
    assert abs(float(draws.mean()) - 0.3) < 5 * chain.init_std / math.sqrt(samples)
    # the variance within 5 standard errors (sqrt(2 / samples) relative)
    assert float(draws.var()) / chain.init_std**2 == pytest.approx(1.0, abs=5 * math.sqrt(2 / samples))
    correlation = np.corrcoef(draws.numpy())
    off_diagonal = correlation[~np.eye(len(seeds), dtype=bool)]
    assert np.abs(off_diagonal).max() < 6 / math.sqrt(draws.shape[1])


@pytest.mark.parametrize("config, args, expected", [
    (LANGEVIN, ["--start", "adversarial"], "error: --start adversarial: unlearning.algorithm 'langevin' is audited"),
    (LANGEVIN, ["--override", "compat.langevin_clipping=upstream"], "error: compat.langevin_clipping: 'upstream'"),
    (D2D_SEQUENCE, [],
     "error: unlearning.d2d.requests: [1, 1, 1, 1, 1, 1, 1, 1] cannot be audited"),
], ids=["start", "upstream-clipping", "d2d-sequence"])
def test_what_the_chains_cannot_audit_is_a_one_line_error(config, args, expected, tmp_path, capsys):
    code, lines, err = run_audit(capsys, config, tmp_path / "out", "--chains", 16, *args)
    assert code == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_d2d_chains_are_its_descent_plus_the_secret_state_noise_of_its_plan():
    """D2D's training is noise-free from a point: every chain of a world publishes the same
    model plus N(0, sigma^2 I) with the sigma of its plan, which is what the slack reads
    (output_noise_std); the worlds' models differ by the forget example's pull alone."""
    config = load_config(D2D)
    data = get_datamodule(config, "cpu")
    plan = make_plan(config, data.sizes)
    sigma = plan.privacy.details["d2d_sigmas"]
    assert plan.algorithm.output_noise_std() == sigma
    outputs = {w: convex.world_outputs(config, data, w, chain_seeds(0, w, 64), "cpu")[0].double() for w in "AB"}
    noiseless = {w: convex.world_outputs(config, data, w, chain_seeds(0, w, 2), "cpu", noise_scale=0.0)[0]
                 for w in "AB"}
    for w in "AB":
        assert torch.equal(noiseless[w][0], noiseless[w][1])  # one model per world
        spread = outputs[w] - noiseless[w][0].double()
        assert float(spread.std()) / float32_at_least(sigma) == pytest.approx(1.0, abs=5 / math.sqrt(spread.numel()))
    shift = float(torch.linalg.vector_norm(noiseless["A"][0] - noiseless["B"][0]))
    radius = d2d_accountant.convergence_radius(1, 1, 1.0, 0.02, len(data.train), plan.algorithm.gamma)
    assert 0 < shift < radius
    sequence = load_config(D2D_SEQUENCE)
    assert make_plan(sequence).algorithm.output_noise_std() is None


def test_a_chain_is_the_same_whichever_group_it_runs_in():
    """Chains are independent: vectorising them (one [N, d] tensor per group) changes a
    chain's output by float rounding only, and no chain's draws depend on its neighbours."""
    config = load_config(LANGEVIN, ["training.epochs=10", "unlearning.langevin.retrain_reference=false"])
    data = get_datamodule(config, "cpu")
    seeds = chain_seeds(0, "A", 4)
    together, _ = convex.world_outputs(config, data, "A", seeds, "cpu", group=4)
    alone, _ = convex.world_outputs(config, data, "A", seeds, "cpu", group=1)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert float(torch.cdist(together, together).fill_diagonal_(float("inf")).min()) > 1.0  # distinct draws


def test_the_direction_is_fixed_by_the_chains_that_choose_the_test_alone():
    """The mean models come from the first half of each world (the selection half of
    bounds.split_halves): changing every evaluating chain leaves them as they were."""
    from src.audit.bounds import split_halves

    a, b = torch.randn(10, 5), torch.randn(10, 5)
    select, evaluate = split_halves(10)
    mean_a, mean_b = convex.mean_models(a, b)
    torch.testing.assert_close(mean_a, a[select].mean(0))
    a[evaluate] += 100.0
    b[evaluate] -= 100.0
    assert all(torch.equal(x, y) for x, y in zip(convex.mean_models(a, b), (mean_a, mean_b)))

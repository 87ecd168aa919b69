"""`seeds: N`: N members of one config in one process and one run directory (src/runner.py).

Member i is the single run of member_config(config, i) (its global seed, and DP-SGD's seed,
from src/seeds.py's member_seed): the same rows and results. `seeds: 1` is today's run.
A diverged member fails the whole run. The baselines table reads members as seeds: a
folder of single-seed configs and one `seeds: N` config give the same table, and its
interval is the Student-t interval over the members' values."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml
from scipy import stats

from src.config import load_config, member_config, run_id
from src.figures.__main__ import main as figures_main
from src.seeds import member_seed
from tests.conftest import run_main

FAST = {"training.epochs": 1, "unlearning.epochs": 1, "evaluation": {"mia": {"svc": {"n_shadow": 100}}}}
EMPIRICAL = {"unlearning.momentum": 0.9, "unlearning.weight_decay": 0.0005, "unlearning.max_lr": 0.03,
             "unlearning.lr_schedule": "constant", "unlearning.iteration": None}
TIMING = ("seconds", "cumulative_seconds", "timings", "unlearn_seconds", "fit_seconds", "evaluation_seconds", "total_seconds")


def run_dirs(logs):
    return {p.name: p for p in logs.iterdir() if p.is_dir() and (p / "summary.json").is_file()}


def read(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return summary, rows


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def single_result(summary):
    keys = ("test_accuracy", "test_loss", "evaluation", "certificate", "noisy_steps", "compute",
            "certified_epsilon", "certified_delta", "certificate_valid", "requests")
    return without_timings({k: summary.get(k) for k in keys})


def test_seeds_one_is_todays_run(make_config, tmp_path):
    """The same run id, files and numbers with and without `seeds: 1`."""
    plain, _ = make_config("one", {**FAST, "logs_dir": str(tmp_path / "a")})
    explicit, _ = make_config("one1", {**FAST, "name": "one", "seeds": 1, "logs_dir": str(tmp_path / "b")})
    assert run_id(load_config(plain)) == run_id(load_config(explicit))
    assert "seeds" not in load_config(explicit).to_dict()
    for path in (plain, explicit):
        assert run_main("--config", path, "--quiet") == 0
    (a,), (b,) = run_dirs(tmp_path / "a").values(), run_dirs(tmp_path / "b").values()
    assert a.name == b.name
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    (sa, ra), (sb, rb) = read(a), read(b)
    assert without_timings(ra) == without_timings(rb) and all("member" not in row for row in ra)
    assert single_result(sa) == single_result(sb) and "members" not in sa


MC = {"unlearning.algorithm": "contractive_coefficients", "unlearning.init_model_clip": 7,
      "unlearning.weight_decay": 500, "unlearning.iteration": None,
      "unlearning.contractive_coefficients": {"epsilon_target": 1, "sigma": 0.01, "model_clip": 0.01,
                                              "noise_addition_after_projection": True}}
OP = {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None, "unlearning.dp-baseline": {"epsilon_target": 1}}
DPSGD = {"training.dp_sgd": {"l2_norm_clip": 1.0, "target_epsilon": 50, "target_delta": 1e-5, "seed": 7},
         "unlearning.algorithm": "dp-sgd", "unlearning.iteration": None}


def close(a, b, path=""):
    """Equal up to float rounding: numbers to 1e-4 relative, or 0.01 absolute (a rounding can
    flip a prediction or an attack's decision on a near-tie: one example of 360 is 0.0028)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-2), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name, overrides, path", [
    ("gc", {}, "vectorised"),
    ("mc", MC, "vectorised"),
    ("op", OP, "vectorised"),
    ("ft", {"unlearning.algorithm": "ft", **EMPIRICAL}, "vectorised"),
    ("dpsgd", DPSGD, "vectorised"),
    ("stream", {"requests": {"num_requests": 2}}, "sequential"),
])
def test_member_i_is_the_single_run_of_its_seed(make_config, tmp_path, name, overrides, path):
    ens_path, _ = make_config(name, {**FAST, **overrides, "seeds": 2, "logs_dir": str(tmp_path / "ens")})
    config = load_config(ens_path)
    single = member_config(config, 1)
    assert single.global_seed == member_seed(config.global_seed, 1) != config.global_seed and single.seeds == 1
    if config.training.dp_sgd is not None:
        assert single.training.dp_sgd.seed == member_seed(7, 1)
    single_path, data = make_config(name + "1", {**FAST, **overrides, "name": name, "global_seed": single.global_seed,
                                                 "logs_dir": str(tmp_path / "one")})
    if config.training.dp_sgd is not None:
        data["training"]["dp_sgd"]["seed"] = single.training.dp_sgd.seed
        single_path.write_text(yaml.safe_dump(data))
    assert run_id(load_config(single_path)) == run_id(single)
    assert run_main("--config", ens_path, "--quiet") == 0
    assert run_main("--config", single_path, "--quiet") == 0
    (ens_dir,), (one_dir,) = run_dirs(tmp_path / "ens").values(), run_dirs(tmp_path / "one").values()
    ens, ens_rows = read(ens_dir)
    one, one_rows = read(one_dir)
    assert ens["seeds"] == 2 and [m["member"] for m in ens["members"]] == [0, 1]
    assert ens["plan"]["ensemble"]["unlearn"].startswith(path)
    member = ens["members"][1]
    assert member["run_id"] == one["run_id"] == one_dir.name
    assert all(isinstance(row["member"], int) for row in ens_rows)
    mine = [{k: v for k, v in row.items() if k != "member"} for row in without_timings(ens_rows) if row["member"] == 1]
    if path == "sequential":  # bit for bit
        assert single_result(member) == single_result(one)
        assert mine == without_timings(one_rows)
    else:  # theta [N, d]: every evaluation row of the single run, to float rounding
        close(single_result(member), single_result(one))
        # all but the per-step batch rows
        evaluated = [r for r in without_timings(one_rows) if not ("loss" in r and "state_step" in r)]
        assert len(mine) == len(evaluated) > 5
        for got, expected in zip(mine, evaluated):
            close(got, expected)
    assert ens["members"][0]["run_id"] == run_id(member_config(config, 0))  # member 0: today's run of the config
    if name == "stream":
        assert (ens_dir / "member-1" / "deployed").is_dir() and (one_dir / "deployed").is_dir()


DPSGD_IN_RUN = {**DPSGD, "training.pretrained": False, "dataset.batch_size": 256,  # chunks of 2: the vmap
                "compat.group_privacy": "tight"}  # calibrates in seconds; the exact rule has its own tests


def test_dp_sgd_members_train_as_one_ensemble(make_config, tmp_path):
    """DP-SGD training in the run (`pretrained: false`): the members train as one ensemble
    (theta [N, d], the plan says so), and so does their fine-tuning; member 1 is the single
    run of its seeds: the same certificate, its rows and checkpoints to float rounding."""
    import torch

    ens_path, _ = make_config("dpv", {**FAST, **DPSGD_IN_RUN, "seeds": 2, "logs_dir": str(tmp_path / "ens")})
    config = load_config(ens_path)
    single = member_config(config, 1)
    single_path, data = make_config("dpv1", {**FAST, **DPSGD_IN_RUN, "name": "dpv", "global_seed": single.global_seed,
                                             "logs_dir": str(tmp_path / "one")})
    data["training"]["dp_sgd"]["seed"] = single.training.dp_sgd.seed
    single_path.write_text(yaml.safe_dump(data))
    assert run_main("--config", ens_path, "--quiet") == 0
    assert run_main("--config", single_path, "--quiet") == 0
    (ens_dir,), (one_dir,) = run_dirs(tmp_path / "ens").values(), run_dirs(tmp_path / "one").values()
    ens, ens_rows = read(ens_dir)
    one, one_rows = read(one_dir)
    assert ens["plan"]["ensemble"]["fit"].startswith("vectorised DP-SGD training"), ens["plan"]["ensemble"]
    assert ens["plan"]["ensemble"]["unlearn"].startswith("vectorised")
    member = ens["members"][1]
    assert member["run_id"] == one["run_id"]
    # the accountant's numbers, not float rounding: the same certificate
    assert member["certificate"] == one["certificate"] and member["certificate_valid"] is True
    for key in ("certified_epsilon", "certified_delta"):
        assert member[key] == one[key]
    close(single_result(member), single_result(one))
    # every row of the single run (its training's included) but the fine-tuning's per-step batch rows
    mine = [{k: v for k, v in row.items() if k != "member"} for row in without_timings(ens_rows) if row["member"] == 1]
    evaluated = [r for r in without_timings(one_rows) if not ("loss" in r and "state_step" in r)]
    assert len(mine) == len(evaluated) and sum("train_loss" in row for row in mine) == 1
    for got, expected in zip(mine, evaluated):
        close(got, expected)
    for epoch in (0, 1):
        got = torch.load(ens_dir / "member-1" / "ckpt" / f"checkpoint_{epoch}.pt", weights_only=True)
        expected = torch.load(one_dir / "ckpt" / f"checkpoint_{epoch}.pt", weights_only=True)
        assert got["meta"]["dp_sgd"]["noise_multiplier"] == expected["meta"]["dp_sgd"]["noise_multiplier"]
        for name, tensor in expected["state_dict"].items():
            assert torch.allclose(got["state_dict"][name], tensor, rtol=1e-4, atol=1e-6), (epoch, name)


SAM = {"rho": 0.1, "adaptive": False, "lamb": 1.0, "sign": "min"}
EMPIRICAL_METHODS = {  # each vectorised empirical method, with the variants that change its code path
    "ft": {},
    "ga": {"unlearning.algorithm": "ga", "unlearning.max_lr": 0.001},
    "ngplus": {"unlearning.algorithm": "neggrad_plus", "unlearning.neggrad_plus": {"alpha": 0.97}},
    "ngplus-cached": {"unlearning.algorithm": "neggrad_plus", "compat.neggrad_plus_forget_order": "cached"},
    "l1": {"unlearning.algorithm": "l1_sparse",
           "unlearning.l1_sparse": {"alpha": 0.5, "normalize_by_num_params": True}},
    "rl": {"unlearning.algorithm": "random_label"},
    "rl-sequential": {"unlearning.algorithm": "random_label", "unlearning.random_label": {
        "schedule": "sequential", "exclude_true_label": True, "resample_each_epoch": False}},
    "scrub": {"unlearning.algorithm": "scrub", "unlearning.scrub": {"msteps": 1}},
    "ngplus-sam": {"unlearning.algorithm": "neggrad_plus", "unlearning.sam": SAM},
    "ngplus-asam-max": {"unlearning.algorithm": "neggrad_plus",
                        "unlearning.sam": {**SAM, "adaptive": True, "sign": "max", "lamb": 0.5}},
    "salun": {"unlearning.algorithm": "salun"},
    "salun-upstream": {"unlearning.algorithm": "salun", "compat.saliency_mask": "sgd_steps", "unlearning.salun": {
        "mask_ratio": 0.3, "mask_select": "smallest", "restore_masked": False}},
    "sharpmm": {"unlearning.algorithm": "sharp_minmax", "unlearning.max_lr": 0.001},
    "sharpmm-perturbed": {"unlearning.algorithm": "sharp_minmax", "unlearning.max_lr": 0.001,
                          "compat.sharp_minmax_mask": "perturbed_only"},
    # influence unlearning, then an epoch of the trainer's fine-tuning
    **{f"iu-{solver}": {"unlearning.algorithm": "influence", "unlearning.influence": {
        "alpha": 1.0, "n_fisher_samples": 40, "solver": solver}} for solver in ("woodfisher_heuristic", "exact", "cg")},
    "iu-chunks": {"unlearning.algorithm": "influence", "unlearning.influence": {"alpha": 1.0, "n_fisher_samples": 40}},
}


@pytest.mark.parametrize("name", sorted(EMPIRICAL_METHODS))
def test_an_empirical_member_is_the_single_run_of_its_seed(make_config, tmp_path, monkeypatch, name):
    """`seeds: 3` of an empirical method runs as one ensemble of theta [3, d] (the plan says
    so), and each member's rows and results are its single run's to float rounding: its own
    batch orders, random labels, saliency mask, SAM norm, teacher and Fisher samples."""
    if name == "iu-chunks":  # the members' Fisher samples in chunks of 2 members (2 + 1)
        from src.unlearning import influence
        monkeypatch.setattr(influence, "member_chunk", lambda members, m, d: 2)
    if name == "rl":  # the members' batches augmented one member at a time
        from src.unlearning import empirical
        monkeypatch.setattr(empirical, "GATHER_EXAMPLES", 128)
    overrides = {**FAST, "unlearning.algorithm": "ft", **EMPIRICAL, "unlearning.epochs": 2,
                 **EMPIRICAL_METHODS[name]}
    ens_path, _ = make_config(name, {**overrides, "seeds": 3, "logs_dir": str(tmp_path / "ens")})
    config = load_config(ens_path)
    assert run_main("--config", ens_path, "--quiet") == 0
    (ens_dir,) = run_dirs(tmp_path / "ens").values()
    ens, ens_rows = read(ens_dir)
    assert ens["plan"]["ensemble"]["unlearn"].startswith("vectorised"), ens["plan"]["ensemble"]
    for i in (0, 2):
        seed = member_config(config, i).global_seed
        single_path, _ = make_config(f"{name}{i}", {**overrides, "name": name, "global_seed": seed,
                                                    "logs_dir": str(tmp_path / f"one{i}")})
        assert run_main("--config", single_path, "--quiet") == 0
        (one_dir,) = run_dirs(tmp_path / f"one{i}").values()
        one, one_rows = read(one_dir)
        member = ens["members"][i]
        assert member["run_id"] == one["run_id"]
        close(single_result(member), single_result(one))
        mine = [{k: v for k, v in row.items() if k != "member"} for row in without_timings(ens_rows)
                if row["member"] == i]
        # all but the per-step batch rows (IU's fine-tuning epoch)
        theirs = [r for r in without_timings(one_rows) if not ("loss" in r and "state_step" in r)]
        assert [sorted(r) for r in mine] == [sorted(r) for r in theirs] and len(mine) > 8
        for got, expected in zip(mine, theirs):
            close(got, expected)
            losses_close(got, expected)
        losses_close(single_result(member), single_result(one))
    assert len({m["test_loss"] for m in ens["members"]}) == 3  # three different members


def losses_close(a, b, path=""):
    """Every loss to float rounding (measured: within 6e-7; a wrong stream, mask or norm
    moves them by far more), where `close` lets a near-tie flip a prediction."""
    if isinstance(a, dict):
        for k in a:
            losses_close(a[k], b[k], f"{path}.{k}")
    elif path.endswith("_loss") and isinstance(a, float):  # not eval/mia_svc/loss: an attack's accuracy
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5), path


SEQUENTIAL_FT = {"unlearning.algorithm": "ft", **EMPIRICAL, "unlearning.fine_grained_validation": True}


@pytest.mark.parametrize("method", [{}, {"unlearning.algorithm": "ft", **EMPIRICAL}, SEQUENTIAL_FT])
def test_a_diverged_member_fails_the_run(make_config, tmp_path, capsys, method):
    """Vectorised (Gradient Clipping, FT) and sequential (FT with fine-grained validation):
    the run fails naming the member, and nothing of it is recorded as finished."""
    path, _ = make_config("nan", {**FAST, **method, "seeds": 2, "post_unlearning.max_lr": 1e30,
                                  "unlearning.max_lr": 1e30 if method else 1e-4})
    from src.runner import make_plan, member_paths
    path_taken = member_paths(make_plan(load_config(path)))["unlearn"]
    assert path_taken.startswith("sequential" if method is SEQUENTIAL_FT else "vectorised"), path_taken
    assert run_main("--config", path, "--quiet") == 2
    err = capsys.readouterr().err
    assert "error: member 0 of 2 (global_seed 1234)" in err and "diverged" in err
    assert "nothing of this run is recorded as finished" in err.lower()
    logs = tmp_path / "logs"
    assert not logs.exists() or not list(logs.iterdir())


@pytest.mark.parametrize("pretrained", [False, "auto"])
def test_dp_sgd_members_in_release_mode_train_one_after_another(make_config, capsys, pretrained):
    """secure_rng: noise and memberships from OS entropy, which no member's seed replays: the
    members' DP-SGD training stays sequential, and the plan says why."""
    path, _ = make_config("dprel", {**FAST, **DPSGD_IN_RUN, "training.pretrained": pretrained, "seeds": 2,
                                    "secure_rng": True})
    assert run_main("--config", path, "--dry-run") == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ensemble"]["fit"]
    assert fit.startswith("sequential in-process (release mode, secure_rng"), fit


@pytest.mark.parametrize("pretrained", [False, "auto"])
def test_a_diverged_dp_sgd_member_fails_the_run(make_config, tmp_path, capsys, pretrained):
    """The members' DP-SGD training as one ensemble (in the run, or filling the auto cache):
    a diverged member fails the run, named; no run directory, no cached model."""
    path, _ = make_config("dpnan", {**FAST, **DPSGD_IN_RUN, "training.pretrained": pretrained, "seeds": 2,
                                    "training.max_lr": 1e30, "checkpoints_dir": str(tmp_path / "cache")})
    assert run_main("--config", path, "--dry-run") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ensemble"]["fit"].startswith("vectorised DP")
    assert run_main("--config", path, "--quiet") == 2
    err = capsys.readouterr().err
    assert "error: member 0 of 2 (global_seed 1234)" in err and "diverged in pretraining" in err
    assert "nothing of this run is recorded as finished" in err.lower()
    logs = tmp_path / "logs"
    assert not logs.exists() or not list(logs.iterdir())
    cache = tmp_path / "cache"
    assert not cache.exists() or not list(cache.rglob("model.pt"))


def test_members_are_seeds_in_the_table(make_config, tmp_path):
    """3 single-seed configs per method and one `seeds: 3` config per method: the same table;
    its interval is the t-interval over the members, as summary.json's member_stats."""
    methods = {"rt": {"unlearning.algorithm": "retrain", "unlearning.iteration": None},
               "ft": {"unlearning.algorithm": "ft", **EMPIRICAL}}
    seed = 1234
    for method, overrides in methods.items():
        make_config(method, {**FAST, **overrides, "seeds": 3, "logs_dir": str(tmp_path / "ens")},
                    directory=tmp_path / "ensemble")
        for i in range(3):
            make_config(f"{method}{i}", {**FAST, **overrides, "name": method, "global_seed": member_seed(seed, i),
                                         "logs_dir": str(tmp_path / "one")}, directory=tmp_path / "singles")
    for folder in ("ensemble", "singles"):
        for path in sorted((tmp_path / folder).glob("*.yaml"), key=lambda p: (not p.name.startswith("rt"), p.name)):
            assert run_main("--config", path, "--quiet") == 0
    tables = {}
    for folder, logs in (("ensemble", "ens"), ("singles", "one")):
        out = tmp_path / f"fig-{folder}"
        assert figures_main(["--figure", "baselines", "--logs", str(tmp_path / logs), "--folder",
                             str(tmp_path / folder), "--out", str(out)]) == 0
        tables[folder] = list(csv.DictReader(open(out / "baselines.csv")))
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]  # noqa: E731
    assert strip(tables["ensemble"]) == strip(tables["singles"])
    by_method = {row["method"]: row for row in tables["ensemble"]}
    assert by_method["FT"]["n_seeds"] == "3"
    (ft_dir,) = [p for p in run_dirs(tmp_path / "ens").values() if p.name.startswith("ft-")]
    ft = json.loads((ft_dir / "summary.json").read_text())
    values = [m["evaluation"]["tow"]["tow"] for m in ft["members"]]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert half > 0
    assert float(by_method["FT"]["tow"]) == pytest.approx(mean, rel=1e-5)
    assert float(by_method["FT"]["tow_ci95"]) == pytest.approx(half, rel=1e-2)
    tow = ft["member_stats"]["tow"]
    assert tow["n"] == 3 and tow["mean"] == pytest.approx(mean) and tow["ci95"] == pytest.approx(half)
    assert tow["std"] == pytest.approx(sd) and tow["low"] == pytest.approx(mean - half)
    # ToW against the retrain member of the same seed
    references = [m["evaluation"]["tow"]["reference_run"] for m in ft["members"]]
    rt = [json.loads((p / "summary.json").read_text()) for p in run_dirs(tmp_path / "ens").values()
          if p.name.startswith("rt-")][0]
    assert references == [m["run_id"] for m in rt["members"]]


def test_members_missing_from_the_auto_cache_pretrain_as_one_ensemble(make_config, tmp_path):
    """Each member's model lands under its own seed's key, the entry a single run of that seed
    reads, and equals the single pretraining to float rounding."""
    import torch

    from src.config import pretrained_key
    from src.data.datamodule import get_datamodule
    from src.runner import ensure_pretrained, make_plan, member_paths
    from src.training.members import pretrain_missing_members
    from src.training.checkpoints import PretrainedCache, load_checkpoint
    from src.training.trainer import Console

    path, _ = make_config("pre", {**FAST, "seeds": 3, "training.epochs": 2, "checkpoints_dir": str(tmp_path / "ens")})
    config = load_config(path)
    assert member_paths(make_plan(config))["fit"].startswith("vectorised pretraining")
    data = get_datamodule(config, "cpu")
    pretrain_missing_members(config, data, "cpu", Console(quiet=True))
    cache = PretrainedCache(tmp_path / "ens")
    keys = [pretrained_key(member_config(config, i)) for i in range(3)]
    assert len(set(keys)) == 3 and all(cache.has(k) for k in keys)
    for i in (0, 2):
        single = member_config(config, i).model_copy(update={"checkpoints_dir": str(tmp_path / f"one{i}")})
        alone, _ = load_checkpoint(ensure_pretrained(single, "cpu", Console(quiet=True), data))
        together, meta = load_checkpoint(cache.model_path(keys[i]))
        assert "trained_as" in meta and meta["pretrained_key"] == keys[i]
        for name in alone:
            assert torch.allclose(alone[name], together[name], rtol=1e-4, atol=1e-5), name
    # a single run of member 2's seed finds its entry: nothing trained again
    before = (cache.model_path(keys[2])).stat().st_mtime_ns
    assert ensure_pretrained(member_config(config, 2), "cpu", Console(quiet=True), data) == cache.model_path(keys[2])
    assert cache.model_path(keys[2]).stat().st_mtime_ns == before


def _dry_run_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    configs = sorted((root / "baselines_runs" / "mini-mnist5k").glob("*-random-d142-g1234.yaml"))
    configs += sorted((root / "langevin_runs" / "mini-mnist5k").glob("fig3a/*-g0.yaml"))  # Langevin and D2D
    configs += sorted((root / "request_stream_runs" / "mini-mnist5k").glob("*.yaml"))[:1]
    configs += [root / "configs" / "rum_mnist5k_certified.yaml", root / "configs" / "rum_mnist5k_nothing_ft_salun.yaml",
                root / "baselines_runs" / "rum-mnist5k" / "rum-ng3-biacc-d142-g1234.yaml"]  # RUM's steps
    configs += sorted((root / "langevin_runs" / "mini-mnist5k" / "pnsgd").glob("pnsgd-*-g0.yaml"))[:1]  # pnsgd
    return configs


def test_nothing_refuses_seeds(capsys):
    """Every method of the committed miniatures plans `seeds: 4`, RUM and pnsgd included, and
    the plan names each phase's path. A RUM grouping by learning events pretrains its
    members one by one: the ensemble's pretraining records none beside the cached model."""
    configs = _dry_run_configs()
    assert len(configs) >= 14 and all(path.is_file() for path in configs)
    vectorised = set()
    for path in configs:
        assert run_main("--config", path, "--override", "seeds=4", "--dry-run") == 0, path
        plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert plan["ensemble"]["members"] == 4 and plan["ensemble"]["fit"] and plan["ensemble"]["unlearn"]
        if plan["ensemble"]["unlearn"].startswith("vectorised"):
            vectorised.add(plan["algorithm"])
        if "biacc" in path.name:
            assert plan["ensemble"]["fit"].startswith("sequential in-process"), plan["ensemble"]
    assert vectorised == {"iteration", "contractive_coefficients", "dp-baseline", "retrain", "ft", "ga", "neggrad_plus",
                          "l1_sparse", "random_label", "scrub", "salun", "sharp_minmax", "influence"}

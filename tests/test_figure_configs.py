"""The figure config folders: the reference's 442 configs, deduplicated, runnable here.

budget_curve_runs/, convergence_curve_runs/, dp_sgd_runs/ and eps_sweep_runs/ are written by
tools/make_figure_configs.py from tools/reference_configs.csv (the reference inventory). These
tests check the committed files against that table independently of the generator, check
that every file validates and plans (the in-process `experiment.py --dry-run`), and check the
miniature Figure 1 in budget_curve_runs/mini-mnist5k/.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from src.config import load_config
from src.runner import make_plan

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("budget_curve_runs", "convergence_curve_runs", "dp_sgd_runs", "eps_sweep_runs")
REFERENCE_CSV = REPO / "tools" / "reference_configs.csv"
GENERATOR = REPO / "tools" / "make_figure_configs.py"
MINI = "budget_curve_runs/mini-mnist5k"
FIGURE2 = "convergence_curve_runs"

CONFIG_FILES = sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.yaml"))
REL = {p: p.relative_to(REPO).as_posix() for p in CONFIG_FILES}

# the original code: files per sub-folder, after removing identical copies (cc-mnist
# shipped 9 runs twice under two wandb projects; eps_sweep 93 -> 84 and 40 -> 24).
EXPECTED_COUNTS = {
    "budget_curve_runs/cc-cifar": 52, "budget_curve_runs/cc-mnist": 16, "budget_curve_runs/dp-baseline-cifar": 12,
    "budget_curve_runs/dp-baseline-mnist": 4, "budget_curve_runs/pabi-cifar": 44, "budget_curve_runs/pabi-mnist": 8,
    "budget_curve_runs/retrain-cifar": 16, "budget_curve_runs/retrain-mnist": 16,
    "convergence_curve_runs/pabi": 4, "convergence_curve_runs/retrain": 4,
    "dp_sgd_runs/dp-sgd-cifar10-fc": 8, "dp_sgd_runs/dp-sgd-cifar100-fc": 8, "dp_sgd_runs/pabi-cifar10-fc": 48,
    "dp_sgd_runs/pabi-cifar100-fc": 52, "dp_sgd_runs/retrain-cifar10-fc": 4, "dp_sgd_runs/retrain-cifar100-fc": 4,
    "eps_sweep_runs/cifar": 84, "eps_sweep_runs/mnist": 24,
    MINI: 5,
}

# the original run logs, "Pretrained checkpoints referenced": (max_lr, weight_decay) of the
# SGD / onecycle / momentum 0 recipe behind each checkpoint id. Kept here, apart from the
# generator's copy, so that the test does not check the generator against itself.
RECIPES = {"iep18hnq": (0.06, 5e-4), "7ij1bj2s": (0.06, 5e-4), "lj5w16z0": (0.06, 5e-4), "gdnuoit7": (0.06, 5e-4),
           "rpguqobg": (0.05, 0.05), "mvk1b1gn": (0.05, 0.05), "5f8ym2ho": (0.06, 5e-4), "jkntz3gd": (0.06, 5e-4)}

# Keys our configs may carry that the reference did not set, and where.
ADDED_KEYS = {"name"}
ADDED_RETRAIN_KEYS = {"unlearning.retrain.clip_and_noise", "unlearning.retrain.start_from_all_zeros"}


# ---------------------------------------------------------------------------------------
# Helpers


def flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def norm(value):
    """Numbers as floats (10 == 10.0); booleans stay booleans; lists as tuples."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(norm(v) for v in value)
    raise TypeError(value)


def cell(text: str):
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("["):
        return json.loads(text)
    try:
        return float(text)
    except ValueError:
        return text


def subfolder_of(relative: str) -> str:
    return "/".join(relative.split("/")[:2])


def identity(flat: dict) -> tuple:
    """A run's content: everything but its name and its wandb section."""
    return tuple(sorted((k, norm(v)) for k, v in flat.items() if k != "name" and not k.startswith("wandb.")))


def reference_rows() -> list:
    """(file, sub-folder, flat config as our folders should hold it) per reference file."""
    out = []
    with open(REFERENCE_CSV, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            flat = {k: cell(v) for k, v in row.items() if k != "file" and v != ""}
            pretrained = flat["training.pretrained"]
            if pretrained is not False:
                checkpoint = re.fullmatch(r"logs/(\w+)/ckpt", pretrained).group(1)
                max_lr, weight_decay = RECIPES[checkpoint]
                flat.update({"training.pretrained": "auto", "training.optim": "SGD", "training.max_lr": max_lr,
                             "training.momentum": 0, "training.weight_decay": weight_decay,
                             "training.lr_schedule": "onecycle"})
            out.append((row["file"], subfolder_of(row["file"]), flat))
    return out


REFERENCE = reference_rows()
# The C loader when there is one (reading 428 files with the pure-Python one takes seconds);
# test_config_validates_and_plans reads each file again with the strict loader of load_config.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
OURS = {p: flatten(yaml.load(p.read_text(encoding="utf-8"), Loader=_LOADER)) for p in CONFIG_FILES}


def ours_in(prefix: str) -> dict:
    return {p: flat for p, flat in OURS.items() if REL[p].startswith(prefix + "/")}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_figure_configs", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------
# The folders as a whole


def test_counts_per_subfolder():
    counts = Counter(subfolder_of(REL[p]) for p in CONFIG_FILES)
    assert dict(counts) == EXPECTED_COUNTS
    assert len(REFERENCE) == 442
    assert sum(counts.values()) == 408 + 5


def test_generator_reproduces_the_committed_files_byte_for_byte():
    generator = load_generator()
    first, second = generator.build(), generator.build()
    assert first == second
    assert generator.check(first, REPO) == []


def test_every_folder_has_a_readme_naming_its_subfolders():
    for folder in FOLDERS:
        readme = (REPO / folder / "README.md").read_text(encoding="utf-8")
        for sub in sorted({subfolder_of(REL[p]) for p in CONFIG_FILES if REL[p].startswith(folder + "/")}):
            assert sub.split("/")[1] in readme, f"{folder}/README.md does not describe {sub}"
        assert f"python run_exp.py -n 1 -e {folder}" in readme
        assert "python -m src.figures" in readme
    assert (REPO / MINI / "README.md").is_file()


def test_names_are_unique_and_are_the_file_stems():
    names = [flat["name"] for flat in OURS.values()]
    assert len(set(names)) == len(names)
    for path, flat in OURS.items():
        assert flat["name"] == path.stem, REL[path]
        assert len(path.stem) <= 64, f"{REL[path]}: keep file names short"


def test_no_two_configs_are_the_same_run():
    for folder in FOLDERS:
        seen = defaultdict(list)
        for path, flat in ours_in(folder).items():
            seen[identity(flat)].append(REL[path])
        assert [v for v in seen.values() if len(v) > 1] == [], folder
    # Across folders the same run may feed two figures: the 8 Gradient Clipping configs of
    # the Figure 1 panels that the epsilon sweep repeats at eps_R = 1, for each dataset.
    across = defaultdict(set)
    for path, flat in OURS.items():
        across[identity(flat)].add(subfolder_of(REL[path]))
    shared = Counter(tuple(sorted(v)) for v in across.values() if len(v) > 1)
    assert shared == {("budget_curve_runs/pabi-cifar", "eps_sweep_runs/cifar"): 8,
                      ("budget_curve_runs/pabi-mnist", "eps_sweep_runs/mnist"): 8}


def test_same_hyperparameters_and_seeds_as_the_reference():
    """Per sub-folder, the set of configs equals the reference's, deduplicated.

    Every key the reference sets is compared by value (numbers as floats), with the
    pretrained checkpoint replaced by `auto` and its recipe. wandb is left out of the
    comparison (entity and log_dir are dropped; project is checked below).
    """
    by_subfolder = defaultdict(dict)  # sub-folder -> identity -> projects
    columns = defaultdict(set)
    for _, sub, flat in REFERENCE:
        by_subfolder[sub].setdefault(identity(flat), set()).add(flat.get("wandb.project"))
        columns[sub] |= {k for k in flat if not k.startswith("wandb.")}
    assert set(by_subfolder) == set(EXPECTED_COUNTS) - {MINI}
    for sub, expected in by_subfolder.items():
        ours = ours_in(sub)
        got = {}
        for path, flat in ours.items():
            extra = set(flat) - columns[sub] - {"wandb.project"}
            allowed = ADDED_KEYS | (ADDED_RETRAIN_KEYS if flat["unlearning.algorithm"] == "retrain" else set())
            if sub.startswith(FIGURE2 + "/"):
                allowed |= {"unlearning.fine_grained_validation"}
            assert extra <= allowed, f"{REL[path]}: keys the reference does not set: {sorted(extra - allowed)}"
            projected = {k: v for k, v in flat.items() if k in columns[sub]}
            got[identity(projected)] = flat.get("wandb.project")
        assert len(got) == len(ours), f"{sub}: two configs are the same run"
        assert set(got) == set(expected), f"{sub}: configs differ from the reference's"
        for key, project in got.items():
            assert project in expected[key], f"{sub}: wandb project {project} is not the reference's"


def test_every_reference_file_is_traced_in_exactly_one_header():
    mentioned = Counter()
    for path in CONFIG_FILES:
        header = " ".join(line[1:].strip() for line in path.read_text(encoding="utf-8").splitlines()
                          if line.startswith("#"))
        match = re.search(r"reference: (\S+)", header)
        if REL[path].startswith(MINI + "/"):
            assert match is None
            continue
        mentioned[match.group(1)] += 1
        also = re.search(r"also shipped as: ([\w, ]+)\)", header)
        for run in (also.group(1).split(", ") if also else []):
            mentioned[f"{subfolder_of(match.group(1))}/{run}_config.yaml"] += 1
    assert mentioned == Counter(file for file, _, _ in REFERENCE)


def test_pretrained_models_resolve_in_this_repository():
    for path, flat in OURS.items():
        pretrained = flat["training.pretrained"]
        if flat.get("training.dp_sgd.seed") is not None:
            assert pretrained is False, REL[path]  # DP-SGD trains its own model
        else:
            assert pretrained == "auto", REL[path]
        assert "wandb.entity" not in flat and "wandb.log_dir" not in flat


def test_figure2_configs_validate_at_fine_grained_resolution():
    configs = ours_in(FIGURE2)
    assert len(configs) == 8
    assert all(flat["unlearning.fine_grained_validation"] is True for flat in configs.values())


def test_retrain_configs_spell_out_the_retrain_section():
    retrain = {p: f for p, f in OURS.items() if f["unlearning.algorithm"] == "retrain"}
    assert len(retrain) == 16 + 16 + 4 + 4 + 4 + 1  # the last: the miniature Figure 1 (one config of 32 seeds)
    for path, flat in retrain.items():
        assert flat["unlearning.retrain.clip_and_noise"] is False, REL[path]
        assert flat["unlearning.retrain.start_from_all_zeros"] is False, REL[path]


# ---------------------------------------------------------------------------------------
# Every file validates and plans: the in-process equivalent of experiment.py --dry-run


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[REL[p] for p in CONFIG_FILES])
def test_config_validates_and_plans(path):
    config = load_config(path)
    plan = make_plan(config).as_dict()
    assert plan["run_id"].startswith(path.stem + "-")
    assert plan["noisy_steps"] <= plan["budget_steps"]
    if config.unlearning.algorithm == "retrain":
        assert plan["certified_epsilon"] == 0.0


@pytest.mark.parametrize("relative", [
    "convergence_curve_runs/retrain/rt-cifar-fg-d230-g9153.yaml",
    "dp_sgd_runs/pabi-cifar100-fc/gc-c100f-C0_0.01-C1_0.1-eta_1e-3-lam_10-d142-g1234.yaml",
    f"{MINI}/gc-mnist5k-epsR_1-d142-g1234.yaml",
])
def test_experiment_cli_dry_run(relative):
    result = subprocess.run([sys.executable, "experiment.py", "--config", relative, "--dry-run"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert plan["run_id"].startswith(Path(relative).stem + "-")
    assert plan["config_file"] == relative


# ---------------------------------------------------------------------------------------
# The miniature Figure 1


def mini_method(flat: dict) -> str:
    algorithm = flat["unlearning.algorithm"]
    if algorithm == "iteration":
        return "gc-certified" if flat.get("unlearning.iteration.epsilon_target") is not None else "gc-published"
    return algorithm


def test_mini_folder_is_five_methods_as_ensembles_of_32_seeds_of_one_seed_pair():
    mini = ours_in(MINI)
    seeds = defaultdict(set)
    for flat in mini.values():
        seeds[mini_method(flat)].add((flat["dataset.seed"], flat["global_seed"]))
        assert flat["seeds"] == 32 and flat["evaluation.mia.svc.features"] == ["confidence"]
        assert flat["dataset.name"] == "mnist_5k" and flat["model.name"] == "tiny_net"
        assert flat["dataset.input_shape"] == [28, 28, 1]
        assert (flat["training.optim"], flat["training.lr_schedule"], flat["training.max_lr"],
                flat["training.weight_decay"], flat["training.epochs"], flat["training.pretrained"]) == \
            ("SGD", "onecycle", 0.06, 0.0005, 30, "auto")
        assert 6 <= flat["unlearning.epochs"] <= 10 and flat["unlearning.delta"] == 1e-5
    pairs = {(142, 1234)}
    assert seeds == {m: pairs for m in ("retrain", "dp-baseline", "contractive_coefficients",
                                        "gc-published", "gc-certified")}


def test_mini_folder_certificates():
    for path, flat in ours_in(MINI).items():
        plan = make_plan(load_config(path)).as_dict()
        method = mini_method(flat)
        if method == "gc-published":
            assert flat["unlearning.iteration.epsilon_renyi_target"] == 1
            assert plan["epsilon_published"] == pytest.approx(1.0036, abs=1e-3)
            assert plan["certified_epsilon"] == pytest.approx(7.077, abs=5e-3)
        elif method == "gc-certified":
            assert flat["unlearning.iteration.epsilon_target"] == 1
            assert plan["certified_epsilon"] <= 1.0 + 1e-9
        elif method == "retrain":
            assert plan["certified_epsilon"] == 0.0
        else:
            assert plan["certified_epsilon"] <= 1.0 + 1e-9, REL[path]
        if method.startswith("gc"):
            u = flat
            assert (u["unlearning.init_model_clip"], u["unlearning.iteration.grad_clip"], u["unlearning.max_lr"],
                    u["unlearning.weight_decay"]) == (0.01, 10, 1e-4, 750)
        assert math.isfinite(plan["certified_epsilon"])

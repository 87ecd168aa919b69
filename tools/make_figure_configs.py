"""Write the figure config folders from the reference's config inventory.

    python tools/make_figure_configs.py           # (re)write the four folders in this repository
    python tools/make_figure_configs.py --check   # exit 1 if the committed configs differ from the output
    python tools/make_figure_configs.py --out DIR # write under DIR instead

Input: tools/reference_configs.csv, one flattened row per YAML file of the reference
(stair-lab/certified-unlearning-neural-networks-icml-2025 at 9fdf670).
Output: budget_curve_runs/, convergence_curve_runs/, dp_sgd_runs/, eps_sweep_runs/, the same
sub-folders as the reference, one YAML per distinct reference config, plus the miniature
Figure 1 in budget_curve_runs/mini-mnist5k/. The YAML files are the product and are committed;
this script only makes them reproducible (same input, byte-identical output). README.md files
in the folders are written by hand and never touched here.

What changes against the reference (each folder's README says it for its figure):
  * training.pretrained: the reference pointed at wandb checkpoints that no config produces
    (logs/<id>/ckpt). Here it is `auto` and the training section is that checkpoint's recipe
    (PRETRAINED_RECIPES, from the original code); the cache key holds the split seed and
    the global seed (D12), so each (dataset.seed, global_seed) pair pretrains its own model.
  * Duplicates (identical content once the wandb section is left out) are written once.
  * wandb keeps only `project` (entity and log_dir were the authors' account set-up).
  * Retrain configs spell out `unlearning.retrain` with both flags false (D13).
  * Figure 2 (convergence_curve_runs) sets unlearning.fine_grained_validation: true (D15).
  * Every config gets `name:` = its file stem, so run ids (logs/<name>-<hash>) are readable.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import math
import sys
import tempfile
import textwrap
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "tools" / "reference_configs.csv"
FOLDERS = ("budget_curve_runs", "convergence_curve_runs", "dp_sgd_runs", "eps_sweep_runs")
FIGURE2_FOLDER = "convergence_curve_runs"
MINI_FOLDER = "budget_curve_runs/mini-mnist5k"

# the original run logs, "Pretrained checkpoints referenced": the training section that made
# each checkpoint. `epochs` stays the config's own training.epochs (the step the reference
# loaded), so a config that loaded epoch 30 of a longer run now pretrains a 30-epoch schedule.
PRETRAINED_RECIPES = {
    "iep18hnq": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
    "7ij1bj2s": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
    "lj5w16z0": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
    "gdnuoit7": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
    "rpguqobg": {"optim": "SGD", "max_lr": 0.05, "momentum": 0, "weight_decay": 0.05, "lr_schedule": "onecycle"},
    "mvk1b1gn": {"optim": "SGD", "max_lr": 0.05, "momentum": 0, "weight_decay": 0.05, "lr_schedule": "onecycle"},
    "5f8ym2ho": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
    "jkntz3gd": {"optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle"},
}

# The reference's key order (its YAML files), extended by our keys; YAML is written in it.
KEY_ORDER = (
    "dataset.name", "dataset.input_shape", "dataset.root", "dataset.batch_size", "dataset.num_workers",
    "dataset.val_split", "dataset.forget_split", "dataset.seed",
    "model.name", "model.n_classes",
    "training.epochs", "training.optim", "training.max_lr", "training.momentum", "training.weight_decay",
    "training.lr_schedule", "training.dp_sgd.l2_norm_clip", "training.dp_sgd.target_epsilon",
    "training.dp_sgd.target_delta", "training.dp_sgd.seed", "training.group_dp", "training.pretrained",
    "unlearning.epochs", "unlearning.optim", "unlearning.momentum", "unlearning.weight_decay",
    "unlearning.lr_schedule", "unlearning.noise_schedule", "unlearning.max_lr", "unlearning.init_model_clip",
    "unlearning.init_model_clip_type", "unlearning.init_sigma", "unlearning.algorithm", "unlearning.delta",
    "unlearning.fine_grained_validation",
    "unlearning.iteration.epsilon_renyi_target", "unlearning.iteration.epsilon_target",
    "unlearning.iteration.grad_clip", "unlearning.iteration.calc_intermediate_eps_renyi",
    "unlearning.contractive_coefficients.epsilon_target", "unlearning.contractive_coefficients.sigma",
    "unlearning.contractive_coefficients.model_clip", "unlearning.contractive_coefficients.grad_clip",
    "unlearning.contractive_coefficients.noise_addition_after_projection",
    "unlearning.contractive_coefficients.noise_addition_before_projection",
    "unlearning.dp-baseline.epsilon_target",
    "unlearning.retrain.clip_and_noise", "unlearning.retrain.start_from_all_zeros",
    "post_unlearning.optim", "post_unlearning.momentum", "post_unlearning.weight_decay",
    "post_unlearning.lr_schedule", "post_unlearning.max_lr", "post_unlearning.post_unlearn_clip",
    "wandb.project", "wandb.entity", "wandb.log_dir",
    "evaluation.mia.svc.features",
    "secure_rng", "save_every", "global_seed", "seeds", "name",
)
DROPPED_KEYS = ("wandb.entity", "wandb.log_dir")

# File names: <method>-<data>[-fg]-<hyperparameters that vary in the sub-folder>-d<split seed>-g<global seed>[-s<DP seed>]
METHOD_TOKENS = {"iteration": "gc", "contractive_coefficients": "mc", "dp-baseline": "op", "retrain": "rt",
                 "dp-sgd": "dpsgd"}
DATA_TOKENS = {"mnist": "mnist", "mnist_5k": "mnist5k", "cifar10": "cifar", "cifar10_feature": "c10f",
               "cifar100_feature": "c100f"}
NAME_KEYS = {
    "iteration": (("epsR", "unlearning.iteration.epsilon_renyi_target"), ("eps", "unlearning.iteration.epsilon_target"),
                  ("C0", "unlearning.init_model_clip"), ("C1", "unlearning.iteration.grad_clip"),
                  ("eta", "unlearning.max_lr"), ("lam", "unlearning.weight_decay")),
    "contractive_coefficients": (("eps", "unlearning.contractive_coefficients.epsilon_target"),
                                 ("C0", "unlearning.init_model_clip"),
                                 ("R", "unlearning.contractive_coefficients.model_clip"),
                                 ("sigma", "unlearning.contractive_coefficients.sigma"),
                                 ("eta", "unlearning.max_lr"), ("lam", "unlearning.weight_decay")),
    "dp-baseline": (("eps", "unlearning.dp-baseline.epsilon_target"), ("C0", "unlearning.init_model_clip")),
    "retrain": (),
    "dp-sgd": (),
}
SEED_KEYS = (("d", "dataset.seed"), ("g", "global_seed"), ("s", "training.dp_sgd.seed"))
# Keys that may differ within a (sub-folder, method) without showing in the file name.
UNNAMED_KEYS = ("name", "wandb.project")


# ---------------------------------------------------------------------------------------
# Values


def parse_cell(text: str):
    """A CSV cell back to its YAML value (the inventory wrote Python's str() of each)."""
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("["):
        return json.loads(text)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def normalise(value):
    """For comparisons: numbers as floats (10 == 10.0), lists as tuples, booleans kept."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(normalise(v) for v in value)
    raise TypeError(f"unexpected value {value!r}")


def identity(flat: dict) -> str:
    """What makes two configs the same run: everything but the name and the wandb section."""
    kept = {k: normalise(v) for k, v in flat.items() if k not in UNNAMED_KEYS and not k.startswith("wandb.")}
    return json.dumps(kept, sort_keys=True)


def yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value}")
        text = repr(value)
        # PyYAML (YAML 1.1) reads 1e-05 as a string: write plain decimals instead.
        return format(Decimal(text), "f") if "e" in text or "E" in text else text
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r}")


def name_number(value) -> str:
    """Short and unambiguous: 0.1 -> 0.1, 10.0 -> 10, 0.001 -> 1e-3, 0.00025 -> 2.5e-4."""
    value = float(value)
    if value != 0 and abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    text = f"{value:.12g}"
    return text


# ---------------------------------------------------------------------------------------
# Configs


def order(flat: dict) -> dict:
    unknown = set(flat) - set(KEY_ORDER)
    if unknown:
        raise ValueError(f"keys without a place in KEY_ORDER: {sorted(unknown)}")
    return {k: flat[k] for k in KEY_ORDER if k in flat}


def pretrained_id(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "logs" or parts[2] != "ckpt" or parts[1] not in PRETRAINED_RECIPES:
        raise ValueError(f"unknown pretrained checkpoint {path!r}")
    return parts[1]


def from_reference(row: dict) -> tuple[dict, str, list]:
    """Our flat config for one reference row, its sub-folder, and notes for its header."""
    file = row["file"]
    subfolder = "/".join(file.split("/")[:2])
    flat = {k: parse_cell(v) for k, v in row.items() if k != "file" and v != ""}
    notes = []
    pretrained = flat.get("training.pretrained")
    if isinstance(pretrained, str):
        rid = pretrained_id(pretrained)
        changed = []
        for key, value in PRETRAINED_RECIPES[rid].items():
            dotted = f"training.{key}"
            if normalise(flat.get(dotted)) != normalise(value):
                changed.append(f"{key} {yaml_scalar(flat.get(dotted))} -> {yaml_scalar(value)}")
                flat[dotted] = value
        flat["training.pretrained"] = "auto"
        note = f"training.pretrained was {pretrained} (not shipped): auto pretrains the training section below"
        if changed:
            note += f" ({', '.join(changed)}: that checkpoint's recipe)"
        notes.append(note)
    for key in DROPPED_KEYS:
        flat.pop(key, None)
    if flat["unlearning.algorithm"] == "retrain":
        if "unlearning.retrain.clip_and_noise" not in flat:
            notes.append("unlearning.retrain added with both flags false (the reference crashed without it, "
                         "docs/differences.md#retrain-section)")
        flat.setdefault("unlearning.retrain.clip_and_noise", False)
        flat.setdefault("unlearning.retrain.start_from_all_zeros", False)
    if subfolder.startswith(FIGURE2_FOLDER + "/"):
        flat["unlearning.fine_grained_validation"] = True
        notes.append("unlearning.fine_grained_validation: true, needed by Figure 2 "
                     "(docs/differences.md#fine-grained-validation)")
    return flat, subfolder, notes


def reference_groups(rows: list) -> list:
    """(sub-folder, flat config, reference files (kept one first), notes) per distinct config."""
    by_subfolder = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["file"]):
        flat, subfolder, notes = from_reference(row)
        by_subfolder[subfolder].append((row["file"], flat, notes))
    out = []
    for subfolder in sorted(by_subfolder):
        items = by_subfolder[subfolder]
        majority = Counter(flat.get("wandb.project") for _, flat, _ in items).most_common(1)[0][0]
        groups = defaultdict(list)
        for item in items:
            groups[identity(item[1])].append(item)
        for members in groups.values():
            # Keep the copy in the sub-folder's main wandb project, then the first file.
            members.sort(key=lambda m: (m[1].get("wandb.project") != majority, m[0]))
            _, flat, notes = members[0]
            out.append((subfolder, flat, [m[0] for m in members], notes))
    return out


MINI_BASE = {
    "dataset.name": "mnist_5k", "dataset.input_shape": [28, 28, 1], "dataset.root": "./data",
    "dataset.batch_size": 128, "dataset.num_workers": 4, "dataset.val_split": 0.1, "dataset.forget_split": 0.1,
    "model.name": "tiny_net", "model.n_classes": 10,
    # The reference's MNIST pretraining recipe (7ij1bj2s), shared by all five methods here.
    "training.epochs": 30, "training.optim": "SGD", "training.max_lr": 0.06, "training.momentum": 0,
    "training.weight_decay": 0.0005, "training.lr_schedule": "onecycle", "training.pretrained": "auto",
    "unlearning.epochs": 10, "unlearning.optim": "SGD", "unlearning.momentum": 0, "unlearning.lr_schedule": "constant",
    "unlearning.noise_schedule": "constant", "unlearning.init_model_clip_type": "clip", "unlearning.init_sigma": 0,
    "unlearning.delta": 0.00001,
    "post_unlearning.optim": "SGD", "post_unlearning.momentum": 0, "post_unlearning.weight_decay": 0.0005,
    "post_unlearning.lr_schedule": "onecycle", "post_unlearning.max_lr": 0.1, "post_unlearning.post_unlearn_clip": False,
    "secure_rng": False, "save_every": 1,
}
# The unlearning sections of the reference's Figure 1 MNIST configs (budget_curve_runs/*-mnist).
MINI_METHODS = (
    ("Retrain from scratch (as budget_curve_runs/retrain-mnist)",
     {"unlearning.algorithm": "retrain", "unlearning.max_lr": 0.06, "unlearning.weight_decay": 0.0005,
      "unlearning.init_model_clip": 20, "unlearning.retrain.clip_and_noise": False,
      "unlearning.retrain.start_from_all_zeros": False}),
    ("Output Perturbation, epsilon 1 (as budget_curve_runs/dp-baseline-mnist)",
     {"unlearning.algorithm": "dp-baseline", "unlearning.max_lr": 0.001, "unlearning.weight_decay": 10,
      "unlearning.init_model_clip": 0.01, "unlearning.dp-baseline.epsilon_target": 1}),
    ("Model Clipping, epsilon 1 (as budget_curve_runs/cc-mnist, the eta 1e-4 / lambda 500 group)",
     {"unlearning.algorithm": "contractive_coefficients", "unlearning.max_lr": 0.0001, "unlearning.weight_decay": 500,
      "unlearning.init_model_clip": 7, "unlearning.contractive_coefficients.epsilon_target": 1,
      "unlearning.contractive_coefficients.sigma": 0.01, "unlearning.contractive_coefficients.model_clip": 0.001,
      "unlearning.contractive_coefficients.grad_clip": False,
      "unlearning.contractive_coefficients.noise_addition_after_projection": True,
      "unlearning.contractive_coefficients.noise_addition_before_projection": False}),
    (("Gradient Clipping as the reference calibrated it (as budget_curve_runs/pabi-mnist, C1 10 / lambda 750): "
      "epsilon_renyi_target 1 prints epsilon 1.0036 but certifies only epsilon 7.08"),
     {"unlearning.algorithm": "iteration", "unlearning.max_lr": 0.0001, "unlearning.weight_decay": 750,
      "unlearning.init_model_clip": 0.01, "unlearning.iteration.epsilon_renyi_target": 1,
      "unlearning.iteration.grad_clip": 10.0, "unlearning.iteration.calc_intermediate_eps_renyi": False}),
    ("Gradient Clipping certified at epsilon 1 (same hyperparameters, iteration.epsilon_target: 1)",
     {"unlearning.algorithm": "iteration", "unlearning.max_lr": 0.0001, "unlearning.weight_decay": 750,
      "unlearning.init_model_clip": 0.01, "unlearning.iteration.epsilon_target": 1,
      "unlearning.iteration.grad_clip": 10.0, "unlearning.iteration.calc_intermediate_eps_renyi": False}),
)
# One data seed and one ensemble of MINI_MEMBERS seeds per method (`seeds:`, docs/ensembles.md):
# member i of every method has the same global seed member_seed(1234, i), so the same pretrained
# model, and the methods compare member by member. The membership-inference attack, which the
# figure does not read, keeps one SVC (on the confidence) to keep its cost down.
MINI_SEEDS = ((142, 1234),)
MINI_MEMBERS = 32
MINI_EVALUATION = {"evaluation.mia.svc.features": ["confidence"]}


def mini_groups() -> list:
    out = []
    for description, method in MINI_METHODS:
        for split_seed, global_seed in MINI_SEEDS:
            flat = {**MINI_BASE, **method, **MINI_EVALUATION, "dataset.seed": split_seed, "global_seed": global_seed,
                    "seeds": MINI_MEMBERS}
            notes = [f"miniature Figure 1 on the bundled mnist_5k digits (not a reference config): {description}; "
                     f"{MINI_MEMBERS} members (seeds) in one process"]
            out.append((MINI_FOLDER, flat, [], notes))
    return out


def assign_names(groups: list) -> list:
    """File stem (= `name`) per config: see the module docstring; unique over all folders."""
    by_method = defaultdict(list)
    for index, (subfolder, flat, _, _) in enumerate(groups):
        by_method[(subfolder, flat["unlearning.algorithm"])].append(index)
    names = [None] * len(groups)
    for (subfolder, algorithm), indices in by_method.items():
        flats = [groups[i][1] for i in indices]
        keys = set().union(*flats)
        varying = {k for k in keys if len({json.dumps(normalise(f.get(k))) for f in flats}) > 1}
        named = {k for _, k in NAME_KEYS[algorithm]} | {k for _, k in SEED_KEYS}
        hidden = varying - named - set(UNNAMED_KEYS)
        if hidden:
            raise ValueError(f"{subfolder} ({algorithm}): {sorted(hidden)} vary but are not in the file name")
        for i, flat in zip(indices, flats):
            parts = [METHOD_TOKENS[algorithm], DATA_TOKENS[flat["dataset.name"]]]
            if flat.get("unlearning.fine_grained_validation"):
                parts.append("fg")
            parts += [f"{token}_{name_number(flat[k])}" for token, k in NAME_KEYS[algorithm]
                      if k in varying and flat.get(k) is not None]
            parts += [f"{token}{flat[k]}" for token, k in SEED_KEYS if k in flat]
            names[i] = "-".join(parts)
    duplicates = [n for n, c in Counter(names).items() if c > 1]
    if duplicates:
        raise ValueError(f"names used twice: {duplicates[:5]}")
    return names


def render(flat: dict, header: list) -> str:
    lines = [f"# {wrapped}" for line in header for wrapped in textwrap.wrap(line, 88, subsequent_indent="  ")]
    # `name` first: it is what the run directory and the logs are called.
    lines += ["", f"name: {yaml_scalar(flat['name'])}"] if lines else [f"name: {yaml_scalar(flat['name'])}"]
    sections = defaultdict(list)
    scalars = []
    for dotted, value in order(flat).items():
        head, _, rest = dotted.partition(".")
        if rest:
            sections[head].append((rest, value))
        elif dotted != "name":
            scalars.append((dotted, value))
    for section, items in sections.items():
        lines += ["", f"{section}:"]
        opened = set()
        for rest, value in items:
            parts = rest.split(".")
            for depth in range(len(parts) - 1):
                prefix = tuple(parts[:depth + 1])
                if prefix not in opened:
                    opened.add(prefix)
                    lines.append("  " * (depth + 1) + f"{parts[depth]}:")
            lines.append("  " * len(parts) + f"{parts[-1]}: {yaml_scalar(value)}")
    lines.append("")
    lines += [f"{key}: {yaml_scalar(value)}" for key, value in scalars]
    return "\n".join(lines) + "\n"


def header_for(subfolder: str, files: list, notes: list) -> list:
    header = []
    if files:
        first, others = files[0], files[1:]
        text = f"reference: {first}"
        if others:
            ids = ", ".join(Path(f).name.split("_config")[0] for f in others)
            text += f" (identical, also shipped as: {ids})"
        header.append(text)
    return header + notes


def build(inventory: Path = INVENTORY) -> dict:
    """{relative path: file text} for every config."""
    with open(inventory, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    groups = reference_groups(rows) + mini_groups()
    names = assign_names(groups)
    out = {}
    for (subfolder, flat, files, notes), name in zip(groups, names):
        flat = {**flat, "name": name}
        out[f"{subfolder}/{name}.yaml"] = render(flat, header_for(subfolder, files, notes))
    _check_round_trip(out, groups, names)
    return dict(sorted(out.items()))


def _check_round_trip(out: dict, groups: list, names: list) -> None:
    import yaml

    for (subfolder, flat, _, _), name in zip(groups, names):
        data = yaml.load(out[f"{subfolder}/{name}.yaml"], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        back = _flatten(data)
        expected = {**flat, "name": name}
        if back != expected or any(type(back[k]) is not type(expected[k]) for k in expected):
            raise AssertionError(f"{subfolder}/{name}.yaml does not read back as written")


def _flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def write(out: dict, root: Path) -> None:
    for folder in FOLDERS:
        for stale in (root / folder).rglob("*.yaml") if (root / folder).is_dir() else ():
            if str(stale.relative_to(root)) not in out:
                stale.unlink()
    for relative, text in out.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)


def check(out: dict, root: Path) -> list:
    """Differences between the generated configs and those under root."""
    present = {str(p.relative_to(root)) for folder in FOLDERS if (root / folder).is_dir()
               for p in (root / folder).rglob("*.yaml")}
    problems = [f"missing: {p}" for p in sorted(set(out) - present)]
    problems += [f"not generated (stale?): {p}" for p in sorted(present - set(out))]
    with tempfile.TemporaryDirectory() as tmp:
        write(out, Path(tmp))
        for relative in sorted(set(out) & present):
            if not filecmp.cmp(Path(tmp) / relative, root / relative, shallow=False):
                problems.append(f"differs: {relative}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="where the folders go (default: the repository)")
    parser.add_argument("--inventory", type=Path, default=INVENTORY, help="the reference inventory CSV")
    parser.add_argument("--check", action="store_true", help="compare with the files under --out, write nothing")
    args = parser.parse_args(argv)
    out = build(args.inventory)
    if args.check:
        problems = check(out, args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(out)} configs: " + ("up to date" if not problems else f"{len(problems)} difference(s)"))
        return 1 if problems else 0
    write(out, args.out)
    counts = Counter(relative.rsplit("/", 1)[0] for relative in out)
    for subfolder, count in sorted(counts.items()):
        print(f"{count:4d}  {subfolder}")
    print(f"{len(out):4d}  configs written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

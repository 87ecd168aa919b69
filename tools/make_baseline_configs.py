"""Write baselines_runs/mini-mnist5k/: certified and empirical unlearning on the same forget
sets of the bundled MNIST digits, small enough for a 2-core CPU.

    python tools/make_baseline_configs.py           # (re)write the folder
    python tools/make_baseline_configs.py --check   # exit 1 if the committed configs differ
    python tools/make_baseline_configs.py --out DIR # write under DIR instead

Every config shares the data, the model (tinier_net: 20 hidden units, 15,910 parameters; the
5-unit tiny_net memorizes nothing measurable, so its memorization groups would be noise) and
the pretraining recipe (the reference's MNIST one: SGD, onecycle at 0.06, weight decay 5e-4,
30 epochs). One data seed (dataset.seed 142: one split, one forget set of each kind) and
`seeds: 32` in every config: 32 members per cell, member i of every method starting from the
same pretrained model (member i's seed), so methods can be compared member by member. Per
forget set (random 10%, or the 10% of highest memorization estimated by 32 subsampled models):
  * retrain: a fresh model trained on the retain set with the pretraining recipe (30 epochs);
  * the three certified methods with the mini Figure 1 hyperparameters (epsilon 1, delta 1e-5,
    10 epochs of budget);
  * every empirical baseline over a 3-point grid (the learning rate; IU's step scale), SGD
    with momentum 0.9 and weight decay 5e-4 (the SalUn / RUM optimizer), 5 epochs.
README.md is written by hand and never touched here.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FOLDER = "baselines_runs/mini-mnist5k"
SEEDS = ((142, 1234), (230, 9153), (318, 2001))  # (dataset.seed, global_seed); RUM's folder uses all three
COMPARISON_SEED = SEEDS[0]  # this folder's one split; its members vary the global seed
MEMBERS = 32  # `seeds:` of every config: enough for ToW intervals of +-0.02 on the random forget set
# The SVC membership attack costs about 60 ms a feature per member on this CPU; the tables
# report the confidence feature (the papers' "MIA" column, ToW-MIA's term) and nothing else.
EVALUATION = {"mia": {"svc": {"features": ["confidence"]}}}
FORGET_SETS = {
    "random": None,
    "memhigh": {"strategy": "memorization",
                "memorization": {"group": "high", "source": "subsample",
                                 "subsample": {"n_models": 32, "fraction": 0.5, "epochs": 30}}},
}
PRETRAINING = {"epochs": 30, "optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005,
               "lr_schedule": "onecycle", "pretrained": "auto"}
POST = {"optim": "SGD", "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle", "max_lr": 0.1,
        "post_unlearn_clip": False}
EMPIRICAL_OPTIMIZER = {"optim": "SGD", "momentum": 0.9, "weight_decay": 0.0005, "lr_schedule": "constant"}
LR_GRID = (0.003, 0.01, 0.03)
SMALL_LR_GRID = (0.001, 0.003, 0.01)  # SCRUB and Sharp MinMax diverge from 0.03 on (a pilot on one seed)

# name -> (unlearning keys, the grid as (file tag, dotted key under unlearning, values))
EMPIRICAL = {
    "ft": ({"algorithm": "ft"}, ("lr", "max_lr", LR_GRID)),
    "ga": ({"algorithm": "ga"}, ("lr", "max_lr", (0.0003, 0.001, 0.003))),
    "ngplus": ({"algorithm": "neggrad_plus", "neggrad_plus": {"alpha": 0.97}}, ("lr", "max_lr", LR_GRID)),
    "ngplus-sam": ({"algorithm": "neggrad_plus", "neggrad_plus": {"alpha": 0.97},
                    "sam": {"rho": 0.1, "adaptive": False, "lamb": 1.0, "sign": "min"}}, ("lr", "max_lr", LR_GRID)),
    "l1": ({"algorithm": "l1_sparse", "l1_sparse": {"alpha": 0.0005, "no_l1_epochs": 0,
                                                     "normalize_by_num_params": False}}, ("lr", "max_lr", LR_GRID)),
    "scrub": ({"algorithm": "scrub", "scrub": {"kd_T": 4, "beta": 0.001, "gamma": 0.99, "msteps": 2,
                                               "msteps_inclusive": False}}, ("lr", "max_lr", SMALL_LR_GRID)),
    "rl": ({"algorithm": "random_label", "random_label": {"resample_each_epoch": True, "exclude_true_label": False,
                                                          "schedule": "concat"}}, ("lr", "max_lr", LR_GRID)),
    "salun": ({"algorithm": "salun", "salun": {"resample_each_epoch": True, "exclude_true_label": False,
                                               "schedule": "concat", "mask_ratio": 0.5, "mask_select": "largest",
                                               "restore_masked": True}}, ("lr", "max_lr", LR_GRID)),
    "sharpmm": ({"algorithm": "sharp_minmax", "sharp_minmax": {"alpha": 0.97, "mask_ratio": 0.5,
                                                               "mask_select": "largest", "retain_sign": "min",
                                                               "forget_sign": "max", "rho": 0.1, "adaptive": False,
                                                               "lamb": 1.0}}, ("lr", "max_lr", SMALL_LR_GRID)),
    "iu": ({"algorithm": "influence", "epochs": 1, "max_lr": 0.01,
            "influence": {"solver": "woodfisher_heuristic", "n_fisher_samples": 1000, "damping_N": 1000}},
           ("alpha", "influence.alpha", (0.3, 1, 3))),
}
CERTIFIED = {
    "gc": {"epochs": 10, "optim": "SGD", "momentum": 0, "weight_decay": 750, "lr_schedule": "constant",
           "noise_schedule": "constant", "max_lr": 0.0001, "init_model_clip": 0.01, "init_model_clip_type": "clip",
           "init_sigma": 0, "algorithm": "iteration", "delta": 0.00001,
           "iteration": {"epsilon_target": 1, "grad_clip": 10.0, "calc_intermediate_eps_renyi": False}},
    "mc": {"epochs": 10, "optim": "SGD", "momentum": 0, "weight_decay": 500, "lr_schedule": "constant",
           "noise_schedule": "constant", "max_lr": 0.0001, "init_model_clip": 7, "init_model_clip_type": "clip",
           "init_sigma": 0, "algorithm": "contractive_coefficients", "delta": 0.00001,
           "contractive_coefficients": {"epsilon_target": 1, "sigma": 0.01, "model_clip": 0.001, "grad_clip": False,
                                        "noise_addition_after_projection": True,
                                        "noise_addition_before_projection": False}},
    "op": {"epochs": 10, "optim": "SGD", "momentum": 0, "weight_decay": 10, "lr_schedule": "constant",
           "max_lr": 0.001, "init_model_clip": 0.01, "init_model_clip_type": "clip", "init_sigma": 0,
           "algorithm": "dp-baseline", "delta": 0.00001, "dp-baseline": {"epsilon_target": 1}},
}
RETRAIN = {"epochs": 30, "optim": "SGD", "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "constant",
           "max_lr": 0.06, "algorithm": "retrain", "delta": 0.00001,
           "retrain": {"start_from_all_zeros": False, "clip_and_noise": False}}
RETRAIN_POST = {**POST, "max_lr": 0.06}  # retrain = the pretraining recipe on the retain set


def set_dotted(node: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def config(name: str, forget: str, seed: tuple, unlearning: dict, post: dict, comment: str) -> tuple[str, str]:
    dataset_seed, global_seed = seed
    dataset = {"name": "mnist_5k", "input_shape": [28, 28, 1], "root": "./data", "batch_size": 128, "num_workers": 0,
               "val_split": 0.1, "forget_split": 0.1, "seed": dataset_seed}
    if FORGET_SETS[forget] is not None:
        dataset["forget"] = FORGET_SETS[forget]
    data = {"name": name, "dataset": dataset, "model": {"name": "tinier_net", "n_classes": 10},
            "training": PRETRAINING, "unlearning": unlearning, "post_unlearning": post, "evaluation": EVALUATION,
            "global_seed": global_seed, "seeds": MEMBERS}
    text = f"# {comment}\n# generated by tools/make_baseline_configs.py; do not edit by hand\n\n"
    return f"{name}.yaml", text + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def all_configs() -> dict[str, str]:
    files = {}
    for forget in FORGET_SETS:
        for seed in (COMPARISON_SEED,):
            tag = f"{forget}-d{seed[0]}-g{seed[1]}"
            files.update([config(f"rt-{tag}", forget, seed, RETRAIN, RETRAIN_POST,
                                 "retrain from scratch on the retain set with the pretraining recipe (the reference)")])
            for method, unlearning in CERTIFIED.items():
                files.update([config(f"{method}-{tag}", forget, seed, unlearning, POST,
                                     f"certified: {unlearning['algorithm']} at epsilon 1 (mini Figure 1 settings)")])
            for method, (keys, (grid_tag, key, values)) in EMPIRICAL.items():
                for value in values:
                    unlearning = {"epochs": 5, **EMPIRICAL_OPTIMIZER, "max_lr": LR_GRID[0], "delta": 0.00001}
                    unlearning.update(keys)
                    set_dotted(unlearning, key, value)
                    files.update([config(f"{method}-{grid_tag}{value:g}-{tag}", forget, seed, unlearning, POST,
                                         f"empirical: {keys['algorithm']}, {grid_tag} {value:g} of the grid")])
    return files


def write(out: Path, folder: str = FOLDER, configs=None) -> None:
    """Rewrite `folder` under `out` with `configs()` (name -> text); README.md is left alone."""
    target = out / folder
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.yaml"):
        old.unlink()
    for name, text in (configs or all_configs)().items():
        (target / name).write_text(text)


def main(argv=None, doc: str = __doc__, folder: str = FOLDER, configs=None,
         script: str = "tools/make_baseline_configs.py") -> int:
    """The command line every config-folder generator shares: write, or --check against the repo."""
    configs = configs or all_configs
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not args.check:
        write(args.out, folder, configs)
        print(f"wrote {len(configs())} configs to {args.out / folder}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), folder, configs)
        fresh, committed = Path(tmp) / folder, REPO / folder
        names = sorted(p.name for p in fresh.glob("*.yaml"))
        same = names == sorted(p.name for p in committed.glob("*.yaml")) and all(
            filecmp.cmp(fresh / n, committed / n, shallow=False) for n in names)
    print("configs are up to date" if same else f"{folder} differs from {script}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

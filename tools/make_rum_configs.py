"""Write baselines_runs/rum-mnist5k/: RUM against the single methods on the same `mix` forget
set of the bundled MNIST digits, small enough for a 2-core CPU.

    python tools/make_rum_configs.py           # (re)write the folder
    python tools/make_rum_configs.py --check   # exit 1 if the committed configs differ
    python tools/make_rum_configs.py --out DIR # write under DIR instead

The data, model (tinier_net), pretraining recipe, memorization estimate (32 subsampled models)
and the first three seed pairs are baselines_runs/mini-mnist5k's (so its cached models and
scores serve both folders); two seed pairs more make five. The forget set is RUM's `mix`: 120
each of high, mid (closest to 0.5) and low memorization of the 3,600 train-split digits. Per
seed pair:
  * retrain, the reference of ToW;
  * the single methods RUM's steps use, at the learning rate mini-mnist5k selected on its
    high-memorization set (5 epochs, SGD momentum 0.9): FT (0.03), SalUn (0.01), NegGrad+
    (alpha 0.97, 0.03); and Gradient Clipping at epsilon 1 (mini Figure 1 settings);
  * RUM's two published recipes grouped by the estimated memorization, with the published
    per-step hyperparameters: "nothing -> FT -> SalUn" (FT 10 epochs at 0.1, SalUn 5 at 0.1)
    and "NegGrad+ x3" (alpha 0.99 / 0.97 / 0.97, lr 0.01 / 0.01 / 0.001, 5 / 5 / 10 epochs);
  * "NegGrad+ x3" grouped by each proxy and by entanglement, and its shuffled control;
  * certified RUM: Gradient Clipping at epsilon 1 on every group (4 epochs each).
README.md is written by hand and never touched here.
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_baseline_configs as base  # noqa: E402  (the shared recipe)

REPO = base.REPO
FOLDER = "baselines_runs/rum-mnist5k"
SEEDS = base.SEEDS + ((406, 4242), (494, 5151))
MIX = {"strategy": "memorization",
       "memorization": {"group": "mix", "mid_rule": "closest_to_half", "source": "subsample",
                        "subsample": {"n_models": 32, "fraction": 0.5, "epochs": 30}}}
EMPIRICAL = {"epochs": 5, **base.EMPIRICAL_OPTIMIZER, "delta": 0.00001}
SALUN_KEYS = base.EMPIRICAL["salun"][0]["salun"]
SINGLE = {
    "ft": {**EMPIRICAL, "max_lr": 0.03, "algorithm": "ft"},
    "salun": {**EMPIRICAL, "max_lr": 0.01, "algorithm": "salun", "salun": SALUN_KEYS},
    "ngplus": {**EMPIRICAL, "max_lr": 0.03, "algorithm": "neggrad_plus", "neggrad_plus": {"alpha": 0.97}},
    "gc": base.CERTIFIED["gc"],
}
NG3 = {"low": {"algorithm": "neggrad_plus", "epochs": 5, "max_lr": 0.01, "neggrad_plus": {"alpha": 0.99}},
       "mid": {"algorithm": "neggrad_plus", "epochs": 5, "max_lr": 0.01, "neggrad_plus": {"alpha": 0.97}},
       "high": {"algorithm": "neggrad_plus", "epochs": 10, "max_lr": 0.001, "neggrad_plus": {"alpha": 0.97}}}
NOTHING_FT_SALUN = {"low": {"algorithm": "nothing"}, "mid": {"algorithm": "ft", "epochs": 10, "max_lr": 0.1},
                    "high": {"algorithm": "salun", "epochs": 5, "max_lr": 0.1, "salun": SALUN_KEYS}}
PROXIES = ("confidence", "max_conf", "entropy", "bi_acc", "holdout_kl", "curvature")


def rum(steps: dict, group_by: str = "memorization", shuffle: bool = False, shared: dict = EMPIRICAL) -> dict:
    return {**copy.deepcopy(shared), "algorithm": "rum", "max_lr": 0.01,
            "rum": {"group_by": group_by, "order": ["low", "mid", "high"], "shuffle": shuffle,
                    "steps": copy.deepcopy(steps)}}


def certified_rum() -> dict:
    gc = {k: v for k, v in base.CERTIFIED["gc"].items() if k != "algorithm"}
    return {**gc, "epochs": 4, "algorithm": "rum",
            "rum": {"group_by": "memorization", "order": ["low", "mid", "high"], "shuffle": False,
                    "steps": {g: {"algorithm": "iteration"} for g in ("low", "mid", "high")}}}


def runs() -> dict[str, tuple[dict, dict, str]]:
    """file tag -> (unlearning, post_unlearning, comment)."""
    out = {"rt": (base.RETRAIN, base.RETRAIN_POST, "retrain from scratch on the retain set (the reference)")}
    for name, unlearning in SINGLE.items():
        out[name] = (unlearning, base.POST, f"single method: {unlearning['algorithm']} on the whole mix forget set")
    out["rum-nft-salun"] = (rum(NOTHING_FT_SALUN), base.POST, "RUM, published recipe nothing -> FT -> SalUn")
    out["rum-ng3"] = (rum(NG3), base.POST, "RUM, published recipe NegGrad+ x3, grouped by memorization")
    for proxy in PROXIES + ("entanglement",):
        out[f"rum-ng3-{proxy.replace('_', '')}"] = (rum(NG3, proxy), base.POST,
                                                    f"RUM, NegGrad+ x3, grouped by {proxy}")
    out["rum-ng3-shuffled"] = (rum(NG3, shuffle=True), base.POST, "RUM, NegGrad+ x3, the shuffled control")
    out["rum-gc3"] = (certified_rum(), base.POST, "certified RUM: Gradient Clipping at epsilon 1 on every group")
    return out


def config(name: str, seed: tuple, unlearning: dict, post: dict, comment: str) -> tuple[str, str]:
    dataset_seed, global_seed = seed
    dataset = {"name": "mnist_5k", "input_shape": [28, 28, 1], "root": "./data", "batch_size": 128, "num_workers": 0,
               "val_split": 0.1, "forget_split": 0.1, "seed": dataset_seed, "forget": MIX}
    data = {"name": name, "dataset": dataset, "model": {"name": "tinier_net", "n_classes": 10},
            "training": base.PRETRAINING, "unlearning": unlearning, "post_unlearning": post,
            "global_seed": global_seed}
    text = f"# {comment}\n# generated by tools/make_rum_configs.py; do not edit by hand\n\n"
    return f"{name}.yaml", text + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def all_configs() -> dict[str, str]:
    files = {}
    for seed in SEEDS:
        for tag, (unlearning, post, comment) in runs().items():
            files.update([config(f"{tag}-d{seed[0]}-g{seed[1]}", seed, unlearning, post, comment)])
    return files


def write(out: Path) -> None:
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    for name, text in all_configs().items():
        (folder / name).write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not args.check:
        write(args.out)
        print(f"wrote {len(all_configs())} configs to {args.out / FOLDER}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp))
        fresh, committed = Path(tmp) / FOLDER, REPO / FOLDER
        names = sorted(p.name for p in fresh.glob("*.yaml"))
        same = names == sorted(p.name for p in committed.glob("*.yaml")) and all(
            filecmp.cmp(fresh / n, committed / n, shallow=False) for n in names)
    print("configs are up to date" if same else f"{FOLDER} differs from tools/make_rum_configs.py")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

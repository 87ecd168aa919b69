"""Figure 3's DP-SGD baseline under the group lemma and under the exact group accountant.

Run by hand (about an hour per rule on one CPU core, minutes on a GPU):

    python benchmarks/dp_sgd_group_accountant.py [--device cuda] [--epochs 50]

It writes synthetic CIFAR-10-sized features (45,000 train / 5,000 val / 10,000 test,
512-d; class means uniform in [0, 0.25] per dimension, so that the classes overlap and
noise costs accuracy), runs dp_sgd_runs/dp-sgd-cifar10-fc/dpsgd-c10f-d142-g2002-s1234.yaml
on them with `compat.group_privacy: tight` and `exact` (same target: epsilon 50, delta
1e-5 for the k = 225 forget examples), and prints the noise multiplier, the certificate,
the validation accuracy of the DP-SGD model and the test accuracy after the config's
noise-free fine-tuning on the retain set, as a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "dp_sgd_runs" / "dp-sgd-cifar10-fc" / "dpsgd-c10f-d142-g2002-s1234.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=50, help="DP-SGD training epochs (the config's 50)")
    parser.add_argument("--rules", default="tight,exact")
    args = parser.parse_args()

    from src import catalogue  # noqa: F401  (fills the registries)
    from src.config import load_config
    from src.runner import make_plan, resolve_device, run
    from src.training.trainer import Console
    from tests.datafiles import write_feature_files

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_feature_files(Path(tmp) / "features", "cifar10", n_train=50000, n_test=10000, n_classes=10, seed=0,
                            mean_scale=0.25)
        for rule in args.rules.split(","):
            config = load_config(CONFIG, [f"dataset.features_root={tmp}/features", f"compat.group_privacy={rule}",
                                          f"training.epochs={args.epochs}", f"logs_dir={tmp}/logs",
                                          f"checkpoints_dir={tmp}/checkpoints", f"device={args.device}"])
            started = time.perf_counter()
            plan = make_plan(config)
            planned = time.perf_counter() - started
            summary = run(config, None, resolve_device(args.device), Console(quiet=True))
            rows.append((rule, plan.privacy.details["dp_sgd_noise_multiplier"], summary["certified_epsilon"],
                         summary["certified_delta"], summary["Val (Post Unlearning Setup)_accuracy"],
                         summary["Test_accuracy"], planned, time.perf_counter() - started))
            print(rows[-1], flush=True)
    print("| group rule | noise multiplier | certified epsilon | certified delta | val acc. of the DP model | "
          "test acc. after fine-tuning | plan (s) | run (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for rule, sigma, eps, delta, val, acc, planned, total in rows:
        print(f"| {rule} | {sigma:.4f} | {eps:.6g} | {delta:.4g} | {val:.4f} | {acc:.4f} | {planned:.1f} | {total:.0f} |")


if __name__ == "__main__":
    main()

"""Write request_stream_runs/mini-mnist5k/: deletion requests over time on the bundled digits.

    python tools/make_request_stream_configs.py          # (re)write the folder
    python tools/make_request_stream_configs.py --check  # exit 1 if the committed files differ

The methods and their hyperparameters are those of the miniature Figure 1
(budget_curve_runs/mini-mnist5k): Gradient Clipping certified at epsilon 1, Model Clipping
and Output Perturbation at epsilon 1, and retraining from scratch. The forget set (10% of
the training split, 360 digits) is deleted in 10 requests of 36, in a seeded order; each
method runs at three budgets per request (unlearning.epochs), on one data seed, as one
ensemble of MEMBERS seeds (`seeds:`, docs/ensembles.md): member i streams its own deployed
models from the pretrained model of global seed member_seed(1234, i), the same model for every
method, so methods and budgets compare member by member.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FOLDER = "request_stream_runs/mini-mnist5k"
NUM_REQUESTS = 10
SEEDS = ((142, 1234),)  # (dataset.seed, global_seed)
MEMBERS = 32  # seeds: members of each config's ensemble
BUDGETS = {"gc": (3, 5, 10), "mc": (3, 5, 10), "op": (3, 5, 10), "rt": (3, 5, 10, 15)}

SHARED_UNLEARNING = {"optim": "SGD", "momentum": 0, "lr_schedule": "constant", "noise_schedule": "constant",
                     "init_model_clip_type": "clip", "init_sigma": 0, "delta": 0.00001}
METHODS = {
    "gc": ("Gradient Clipping certified at epsilon 1",
           {"weight_decay": 750, "max_lr": 0.0001, "init_model_clip": 0.01, "algorithm": "iteration",
            "iteration": {"epsilon_target": 1, "grad_clip": 10.0}}),
    "mc": ("Model Clipping at epsilon 1 (R 0.001, sigma 0.01, eta 1e-4, lambda 500)",
           {"weight_decay": 500, "max_lr": 0.0001, "init_model_clip": 7, "algorithm": "contractive_coefficients",
            "contractive_coefficients": {"epsilon_target": 1, "sigma": 0.01, "model_clip": 0.001, "grad_clip": False,
                                         "noise_addition_after_projection": True,
                                         "noise_addition_before_projection": False}}),
    "op": ("Output Perturbation at epsilon 1 (C0 0.01, classical Gaussian mechanism)",
           {"weight_decay": 10, "max_lr": 0.001, "init_model_clip": 0.01, "algorithm": "dp-baseline",
            "dp-baseline": {"epsilon_target": 1}}),
    "rt": ("retraining from scratch on what remains after every request",
           {"weight_decay": 0.0005, "max_lr": 0.06, "init_model_clip": 20, "algorithm": "retrain",
            "retrain": {"clip_and_noise": False, "start_from_all_zeros": False}}),
}


def config(method: str, epochs: int, dataset_seed: int, global_seed: int) -> tuple[str, str]:
    what, section = METHODS[method]
    name = f"{method}-k{NUM_REQUESTS}-e{epochs}-d{dataset_seed}-g{global_seed}"
    data = {
        "name": name,
        "dataset": {"name": "mnist_5k", "input_shape": [28, 28, 1], "batch_size": 128, "val_split": 0.1,
                    "forget_split": 0.1, "seed": dataset_seed},
        "model": {"name": "tiny_net", "n_classes": 10},
        "training": {"epochs": 30, "optim": "SGD", "max_lr": 0.06, "momentum": 0, "weight_decay": 0.0005,
                     "lr_schedule": "onecycle", "pretrained": "auto"},
        "unlearning": {"epochs": epochs, **SHARED_UNLEARNING, **section},
        "post_unlearning": {"optim": "SGD", "momentum": 0, "weight_decay": 0.0005, "lr_schedule": "onecycle",
                            "max_lr": 0.1},
        "requests": {"num_requests": NUM_REQUESTS, "seed": 0},
        # the membership-inference attack (not read by the figure) with one SVC, to keep its cost down
        "evaluation": {"mia": {"svc": {"features": ["confidence"]}}},
        "global_seed": global_seed,
        "seeds": MEMBERS,
    }
    header = (f"# Deletion requests over time on mnist_5k (docs/requests.md): {what};\n"
              f"# {NUM_REQUESTS} requests of equal size, {epochs} epochs per request, {MEMBERS} members (seeds). "
              "Written by tools/make_request_stream_configs.py.\n\n")
    return name, header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def write(out: Path) -> list[Path]:
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.yaml"):  # README.md is written by hand and stays
        stale.unlink()
    written = []
    for method, budgets in BUDGETS.items():
        for epochs in budgets:
            for dataset_seed, global_seed in SEEDS:
                name, text = config(method, epochs, dataset_seed, global_seed)
                path = folder / f"{name}.yaml"
                path.write_text(text)
                written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    if not args.check:
        print(f"wrote {len(write(REPO))} configs to {FOLDER}/")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text() for p in write(Path(tmp))}
    committed = {p.name: p.read_text() for p in (REPO / FOLDER).glob("*.yaml")}
    if fresh != committed:
        print(f"{FOLDER}/ differs from the generator's output: rerun python tools/make_request_stream_configs.py")
        return 1
    print(f"{FOLDER}/: {len(fresh)} configs as generated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

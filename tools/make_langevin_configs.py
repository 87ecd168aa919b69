"""Write langevin_runs/: the experiments of Langevin unlearning (Chien et al., NeurIPS 2024, Figure 3).

    python tools/make_langevin_configs.py           # (re)write the config folders
    python tools/make_langevin_configs.py --check   # exit 1 if the committed configs differ from the output
    python tools/make_langevin_configs.py --out DIR # write under DIR instead

Folders (each with fig3a/, fig3b/, fig3c/ unless said otherwise):
  mnist-3v8/       MNIST 3 vs 8 (mnist files), logistic regression, the paper's constants
  cifar10-3v8/     CIFAR-10 cat vs ship on the ResNet-18 feature files, logistic regression
  cifar10-multi/   fig3c only: the ten CIFAR-10 classes, softmax regression with the original
                   code's L = 1 + m and M = 2
  mini-mnist5k-multi/  ten classes on the bundled digits: fig3a-c and burnin
  mini-mnist5k/    a miniature of the three figures on the bundled mnist_5k digits 3 vs 8, and
                   pnsgd/: noisy mini-batch SGD against full-batch Langevin and D2D at equal
                   gradient computations (one pass over the data each, one deleted example)

Other modes of the original code: utility/ (accuracy against the deleted S at epsilon 0.5, 1,
2 and against epsilon at a fixed sigma, K varying), noiseless/ (noise-free gradient descent on
the data without S: the ceiling), sequence/ (many single D2D deletions against one Langevin
request for all), burnin/ (the learned accuracy against the training steps T).

Figure 3a: one deleted example; Langevin unlearning with K = 1 step at the smallest sigma that
certifies epsilon (calibrated here by the accountant's bisection, rounded up), against D2D with
I steps. Figure 3b: 100 deleted examples (8 in the miniature) in requests of several sizes; D2D
deletes one example per request. Figure 3c: K against sigma for 100 deleted examples at
epsilon 1. Every unlearning budget (`unlearning.epochs`) is the K or I the accountant asks for,
computed here from the split sizes, so no noise-free fine-tuning follows; a run's dry-run shows
the same K. The YAML files are the product and are committed; this script makes them
reproducible (same code, byte-identical output).
"""

from __future__ import annotations

import argparse
import filecmp
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.base_datamodule import SplitSizes  # noqa: E402
from src.privacy import d2d  # noqa: E402
from src.privacy import pnsgd  # noqa: E402
from src.privacy.langevin import Chain, calibrate_sigma, sequential_steps, smallest_steps  # noqa: E402

OUT = "langevin_runs"
FULL_BATCH = 50000  # >= every training split here: one batch is the whole data
EPSILONS_3A = (0.05, 0.1, 0.5, 1, 2, 5)
SIGMAS_3C = (0.01, 0.05, 0.1, 0.2, 0.5, 1)


def floor_sig(x: float, digits: int = 6) -> float:
    """x rounded down to `digits` significant digits (step sizes must stay <= their bound)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def ceil_sig(x: float, digits: int = 6) -> float:
    """x rounded up (a calibrated sigma must stay feasible)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale - 1e-9) / scale


class Setting:
    """One dataset's constants, as the configs write them."""

    def __init__(self, folder, dataset, classes, pool, test, val_split, m, smoothness=None, grad_bound=None,
                 steps=10000, seeds=(0, 1, 2, 3, 4), delta=1e-5, delta_rule="one_over_n", pretrained="auto",
                 removed_3b=100, request_sizes_3b=(5, 10, 20), sigma_3b=0.03, d2d_factors=(1, 1.5, 2),
                 removed_3c=100, sigmas_3c=SIGMAS_3C, epsilons_3a=EPSILONS_3A, d2d_steps_3a=(1, 2, 5),
                 figures=("fig3a", "fig3b", "fig3c"), paper_search=True, utility_epsilons=(0.5, 1, 2, 5),
                 utility_sizes=(1, 10, 50, 100, 500, 1000), utility_sigma=0.03, sequence_deletions=1000,
                 burnin_sigmas=(0.015, 0.02, 0.03), burnin_steps=(1, 10, 20, 50, 100, 150, 200, 300),
                 utility_seeds=None):
        self.__dict__.update(locals())
        del self.__dict__["self"]
        self.sizes = SplitSizes.from_pool(pool, test, val_split, 0.5)
        self.n = self.sizes.train
        base_L = smoothness if smoothness is not None else (0.25 if classes == 2 else 0.5)
        self.M = grad_bound if grad_bound is not None else (1.0 if classes == 2 else math.sqrt(2))
        self.L = base_L + m
        self.eta = floor_sig(1.0 / self.L)
        self.d2d_eta = floor_sig(2.0 / (self.L + m))

    def chain(self, sigma):
        return Chain(n=self.n, m=self.m, eta=self.eta, M=self.M, sigma=sigma)

    @property
    def acc_delta(self):
        return 1.0 / self.n if self.delta_rule == "one_over_n" else self.delta

    def forget_split(self, removed: int) -> float:
        if removed == 0:
            return 0.0
        split = round((removed + 0.5) / self.n, 10)
        assert int(self.n * split) == removed, (self.folder, removed)
        return split

    def base(self, name, seed, removed, sigma, unlearning):
        training = {"epochs": self.steps, "algorithm": "langevin", "max_lr": self.eta, "weight_decay": self.m,
                    "pretrained": self.pretrained, "langevin": {"sigma": sigma}}
        if self.smoothness is not None:
            training["langevin"]["smoothness"] = self.smoothness
        if self.grad_bound is not None:
            training["langevin"]["gradient_bound"] = self.grad_bound
        return {
            "dataset": {"name": self.dataset, "batch_size": FULL_BATCH, "val_split": self.val_split,
                        "forget_split": self.forget_split(removed), "seed": 142},
            "model": {"name": "linear", "n_classes": self.classes},
            "training": training,
            "unlearning": {"delta": self.delta, "weight_decay": self.m, **unlearning},
            "name": name,
            "global_seed": seed,
        }

    def langevin(self, epochs, section):
        return {"algorithm": "langevin", "epochs": epochs, "max_lr": self.eta,
                "langevin": {**section, "delta_rule": self.delta_rule}}

    def d2d(self, epochs, section):
        return {"algorithm": "d2d", "epochs": epochs, "max_lr": self.d2d_eta,
                "d2d": {**section, "delta_rule": self.delta_rule}}


ORIGINAL_MODES = ("fig3a", "fig3b", "fig3c", "utility", "noiseless", "sequence")
SETTINGS = (
    Setting("mnist-3v8", "mnist_3v8", 2, 11982, 1984, 0.01, m=0.011982, figures=ORIGINAL_MODES),
    Setting("cifar10-3v8", "cifar10_feature_3v8", 2, 10000, 2000, 0.01, m=0.01, figures=ORIGINAL_MODES),
    # Ten classes: fig3b without D2D's sequence, whose first request needs the trained model within
    # ~1e-8 of the optimum (I_1 grows with the dimension), below float32's resolution; the run
    # refuses it (the original computed those I_i but never ran them). D2D's one request is in fig3a.
    Setting("cifar10-multi", "cifar10_feature_unit", 10, 50000, 10000, 0.01, m=0.05, smoothness=1.0, grad_bound=2.0,
            d2d_factors=(), figures=("fig3a", "fig3b", "fig3c", "burnin")),
    Setting("mini-mnist5k", "mnist_5k_3v8", 2, 800, 200, 0.1, m=0.02, steps=500, seeds=(0, 1, 2), delta=1e-5,
            delta_rule="target", pretrained=False, removed_3b=8, request_sizes_3b=(2, 4, 8), sigma_3b=0.1,
            d2d_factors=(1,), removed_3c=4, sigmas_3c=(0.03, 0.1, 0.3), epsilons_3a=(0.5, 2, 5),
            d2d_steps_3a=(1, 5), paper_search=False, utility_epsilons=(0.5, 1, 2, 5), utility_sizes=(1, 8, 64),
            utility_sigma=0.1, sequence_deletions=32, utility_seeds=(0, 1),
            figures=("fig3a", "fig3b", "fig3c", "pnsgd", "utility", "noiseless", "sequence")),
    # Ten classes on the bundled digits (softmax regression, the framework's own L and M).
    Setting("mini-mnist5k-multi", "mnist_5k_unit", 10, 4000, 1000, 0.1, m=0.05, steps=300, seeds=(0, 1),
            delta=1e-5, delta_rule="target", pretrained=False, removed_3b=8, request_sizes_3b=(4,), sigma_3b=0.03,
            d2d_factors=(), removed_3c=4, sigmas_3c=(0.01, 0.1), epsilons_3a=(0.5, 5), d2d_steps_3a=(1,),
            paper_search=False, burnin_sigmas=(0.01, 0.1), burnin_steps=(10, 50, 300),
            figures=("fig3a", "fig3b", "fig3c", "burnin")),
)


def num(x) -> str:
    return f"{x:g}"


def fig3a(s: Setting):
    for eps in s.epsilons_3a:
        section = {"epsilon_target": eps, "retrain_reference": True}
        sigma = ceil_sig(calibrate_sigma(1, eps, 1, s.chain(1.0), s.acc_delta, alpha_range=(1.0001, 1e5)))
        for seed in s.seeds:
            stem = f"lmc-K_1-eps_{num(eps)}-g{seed}"
            yield stem, s.base(f"{s.folder}-3a-{stem}", seed, 1, sigma, s.langevin(1, section))
        for steps in s.d2d_steps_3a:
            for seed in s.seeds:
                stem = f"d2d-I_{steps}-eps_{num(eps)}-g{seed}"
                yield stem, s.base(f"{s.folder}-3a-{stem}", seed, 1, 0.0,
                                   s.d2d(steps, {"epsilon_target": eps, "steps": steps}))


def fig3b(s: Setting):
    chain = s.chain(s.sigma_3b)
    for nr in s.request_sizes_3b:
        requests = [nr] * (s.removed_3b // nr)
        section = {"epsilon_target": 1, "requests": requests}
        if s.paper_search:
            section["alpha_range"] = [2, 100000]
        alpha_range = tuple(section.get("alpha_range", (1.0001, 1e5)))
        total = sum(r.steps for r in sequential_steps(requests, 1.0, chain, s.acc_delta, alpha_range=alpha_range))
        for seed in s.seeds:
            stem = f"lmc-nr_{nr}-g{seed}"
            yield stem, s.base(f"{s.folder}-3b-{stem}", seed, s.removed_3b, s.sigma_3b, s.langevin(total, section))
    gamma = d2d.contraction(s.d2d_eta, s.L, s.m)
    dimension = 784 if s.dataset.startswith("mnist") else 512
    for factor in s.d2d_factors:
        steps = sum(d2d.sequential_steps(i, 1.0, s.acc_delta, dimension * (s.classes if s.classes > 2 else 1), gamma,
                                         factor) for i in range(1, s.removed_3b + 1))
        section = {"epsilon_target": 1, "requests": [1] * s.removed_3b, "step_factor": factor}
        for seed in s.seeds:
            stem = f"d2d-f_{num(factor)}-g{seed}"
            yield stem, s.base(f"{s.folder}-3b-{stem}", seed, s.removed_3b, 0.0, s.d2d(steps, section))


def fig3c(s: Setting):
    for sigma in s.sigmas_3c:
        section = {"epsilon_target": 1, "retrain_reference": True}
        kwargs = {}
        if s.paper_search:  # the original main_lmc search: alpha in (1, 1e4), K in 1, 11, 21, ...
            section.update(alpha_range=[1, 10000], step_lattice=10)
            kwargs = dict(alpha_range=(1.0, 1e4), step_lattice=10)
        K = smallest_steps(1.0, s.removed_3c, s.chain(sigma), s.acc_delta, **kwargs).steps
        for seed in s.seeds:
            stem = f"lmc-sigma_{num(sigma)}-g{seed}"
            yield stem, s.base(f"{s.folder}-3c-{stem}", seed, s.removed_3c, sigma, s.langevin(K, section))


def utility(s: Setting):
    """The original's paint_utility_s and paint_utility_epsilon: at a fixed sigma, K from the
    accountant for S deleted examples and epsilon; accuracy against S (at each epsilon) and
    against epsilon (at each S) are two views of the same grid of runs."""
    for eps in s.utility_epsilons:
        for S in s.utility_sizes:
            section = {"epsilon_target": eps, "retrain_reference": True}
            K = smallest_steps(float(eps), S, s.chain(s.utility_sigma), s.acc_delta).steps
            for seed in s.utility_seeds or s.seeds:
                stem = f"lmc-S_{S}-eps_{num(eps)}-g{seed}"
                yield stem, s.base(f"{s.folder}-utility-{stem}", seed, S, s.utility_sigma, s.langevin(K, section))


def noiseless(s: Setting):
    """The ceiling: noise-free gradient descent (step 1/L, the same objective) from zero on
    the data without the S examples, for the training's T steps (the original's
    retrain_noiseless); deterministic, so one seed."""
    for S in s.utility_sizes:
        stem = f"retrain-S_{S}"
        config = s.base(f"{s.folder}-noiseless-{stem}", s.seeds[0], S, 0.0,
                        {"algorithm": "retrain", "epochs": s.steps, "max_lr": s.eta})
        config["training"]["epochs"] = 1  # the trained model is discarded
        config["training"]["pretrained"] = False
        config["post_unlearning"] = {"optim": "SGD", "max_lr": s.eta, "momentum": 0.0, "weight_decay": s.m,
                                     "lr_schedule": "constant"}
        yield stem, config


def sequence(s: Setting):
    """The original's comparison of many single deletions by D2D (no secret state, f = 1)
    with one Langevin request deleting them all at once (epsilon 1, the utility sigma)."""
    S = s.sequence_deletions
    gamma = d2d.contraction(s.d2d_eta, s.L, s.m)
    dimension = 784 if s.dataset.startswith("mnist") else 512
    steps = sum(d2d.sequential_steps(i, 1.0, s.acc_delta, dimension * (s.classes if s.classes > 2 else 1), gamma)
                for i in range(1, S + 1))
    K = smallest_steps(1.0, S, s.chain(s.utility_sigma), s.acc_delta).steps
    for seed in s.seeds:
        stem = f"d2d-singles_{S}-g{seed}"
        yield stem, s.base(f"{s.folder}-sequence-{stem}", seed, S, 0.0,
                           s.d2d(steps, {"epsilon_target": 1, "requests": [1] * S}))
        stem = f"lmc-oneshot_{S}-g{seed}"
        yield stem, s.base(f"{s.folder}-sequence-{stem}", seed, S, s.utility_sigma,
                           s.langevin(K, {"epsilon_target": 1, "retrain_reference": True}))


def burnin(s: Setting):
    """The original's search_burnin: the learned chain's accuracy against the training steps
    T, at several temperatures (no deletion; the run only logs the learned accuracy)."""
    for sigma in s.burnin_sigmas:
        for T in s.burnin_steps:
            stem = f"lmc-sigma_{num(sigma)}-T_{T}"
            config = s.base(f"{s.folder}-burnin-{stem}", s.seeds[0], 1, sigma,
                            s.langevin(1, {"steps": 0, "min_steps": 0}))  # epochs > 0: one noise-free pass after
            config["training"]["epochs"] = T
            config["training"]["pretrained"] = False
            yield stem, config


# Noisy mini-batch SGD (Chien, Wang, Chen, Li, NeurIPS 2024, the companion paper): one pass
# over the data for every method (G gradient computations per example), one deleted example.
PNSGD_BATCH = 24  # J = 30 steps per epoch on the 720 training examples
PNSGD_RADIUS = 100.0  # the companion code's default projection radius
PNSGD_EPOCHS = 50  # training epochs of the mini-batch chain (c^J ~ 0.1 per epoch: mixed)
PNSGD_EPSILONS = (0.1, 0.5, 2, 5)


def pnsgd_compare(s: Setting, budget: int = 1):
    for eps in PNSGD_EPSILONS:
        for batch in (PNSGD_BATCH, s.n):  # mini-batches, and the same chain with one full batch
            batches = math.ceil(s.n / batch)
            chain = pnsgd.MiniBatchChain(n=s.n, batch_size=s.n // batches, batches=batches, m=s.m, eta=s.eta, M=s.M,
                                         sigma=1.0, radius=PNSGD_RADIUS)
            sigma = ceil_sig(pnsgd.calibrate_sigma(budget, eps, 1, chain, s.acc_delta))
            epochs = PNSGD_EPOCHS if batch < s.n else s.steps
            for seed in s.seeds:
                stem = f"pnsgd-b_{batch}-eps_{num(eps)}-g{seed}"
                config = s.base(f"{s.folder}-pnsgd-{stem}", seed, 1, sigma, {
                    "algorithm": "pnsgd", "epochs": budget, "max_lr": s.eta,
                    "pnsgd": {"epsilon_target": eps, "delta_rule": s.delta_rule}})
                config["dataset"]["batch_size"] = batch
                config["training"].update(epochs=epochs, algorithm="pnsgd")
                config["training"]["pnsgd"] = {"sigma": sigma, "projection_radius": PNSGD_RADIUS}
                del config["training"]["langevin"]
                yield stem, config
        sigma = ceil_sig(calibrate_sigma(budget, eps, 1, s.chain(1.0), s.acc_delta, alpha_range=(1.0001, 1e5)))
        for seed in s.seeds:
            stem = f"lmc-K_{budget}-eps_{num(eps)}-g{seed}"
            yield stem, s.base(f"{s.folder}-pnsgd-{stem}", seed, 1, sigma,
                               s.langevin(budget, {"epsilon_target": eps}))
            stem = f"d2d-I_{budget}-eps_{num(eps)}-g{seed}"
            yield stem, s.base(f"{s.folder}-pnsgd-{stem}", seed, 1, 0.0,
                               s.d2d(budget, {"epsilon_target": eps, "steps": budget}))


FIGURES = {"fig3a": fig3a, "fig3b": fig3b, "fig3c": fig3c, "pnsgd": pnsgd_compare, "utility": utility,
           "noiseless": noiseless, "sequence": sequence, "burnin": burnin}



def dump(data, indent=0) -> str:
    """Block-style YAML with flow-style lists, keys in insertion order."""
    lines = []
    for key, value in data.items():
        pad = "  " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(dump(value, indent + 1))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(num(v) for v in value)}]")
        elif isinstance(value, bool):
            lines.append(f"{pad}{key}: {'true' if value else 'false'}")
        elif isinstance(value, float):
            lines.append(f"{pad}{key}: {value!r}")
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(lines)


def write_all(out: Path) -> list[Path]:
    written = []
    for s in SETTINGS:
        for figure in s.figures:
            for stem, config in FIGURES[figure](s):
                path = out / s.folder / figure / f"{stem}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                what = f"Figure {figure[3:]}" if figure.startswith("fig") else f"{figure} comparison"
                header = f"# Generated by tools/make_langevin_configs.py ({s.folder}, {what}); do not edit.\n"
                path.write_text(header + dump(config) + "\n")
                written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / OUT), help=f"where to write (default: {OUT}/)")
    parser.add_argument("--check", action="store_true", help="compare with the files under --out, write nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.check:
        files = write_all(out)
        print(f"wrote {len(files)} configs under {out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = write_all(Path(tmp))
        committed = sorted(p.relative_to(out) for p in out.rglob("*.yaml")) if out.is_dir() else []
        fresh = sorted(p.relative_to(tmp) for p in files)
        differ = [str(p) for p in fresh if not (out / p).is_file() or not filecmp.cmp(out / p, Path(tmp) / p,
                                                                                      shallow=False)]
        extra = [str(p) for p in committed if p not in set(fresh)]
    if differ or extra:
        print(f"out of date: {len(differ)} differ or are missing, {len(extra)} not generated: "
              f"{(differ + extra)[:5]}", file=sys.stderr)
        return 1
    print(f"{len(fresh)} configs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

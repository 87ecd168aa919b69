"""Throughput of `seeds: N` end to end (run by hand): members per second of one experiment
with `seeds: N` (runner.run_members: vectorised or sequential in-process, as --dry-run
says), against the same N members as N single runs in this process (runner.run each) and
against separate `python experiment.py` processes (a sample of them, one at a time unless
--workers). Every member's model comes from the `auto` cache, filled before timing; every
path writes its run directories and evaluates its forgetting metrics, as a user's run does.

    python benchmarks/bench_seeds.py [--family gc|mc|op|retrain|ft|neggrad_plus|dpsgd] [--members 16] [--processes 4]
                                     [--config FILE] [--override key=value ...]

`dpsgd` trains every member by DP-SGD in the run (`training.pretrained: false`), so that its
training, the part src/training/dp_sgd_ensemble.py vectorises, is timed too; e.g.
`--family dpsgd --override training.epochs=2 --override unlearning.epochs=1`.

Prints the load average before and after (the machine may be shared), and last lines
`members_per_second_<path>=<value>`; `..._unlearning` the same for the unlearning phase alone
(the summaries' unlearn_seconds: the ensemble's time divided by its members); for `dpsgd` also
`training_ensemble` and `training_in_process`: the DP-SGD training alone, without unlearning and
evaluation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICKSTART = ROOT / "configs" / "quickstart_mnist5k.yaml"
EMPIRICAL = ["unlearning.momentum=0.9", "unlearning.weight_decay=0.0005", "unlearning.max_lr=0.01",
             "unlearning.iteration=null"]
FAMILIES = {
    "gc": [],
    "mc": ["unlearning.algorithm=contractive_coefficients", "unlearning.init_model_clip=7",
           "unlearning.weight_decay=500", "unlearning.iteration=null",
           "unlearning.contractive_coefficients={epsilon_target: 1, sigma: 0.01, model_clip: 0.01, "
           "noise_addition_after_projection: true}"],
    "op": ["unlearning.algorithm=dp-baseline", "unlearning.iteration=null", "unlearning.dp-baseline={epsilon_target: 1}"],
    "retrain": ["unlearning.algorithm=retrain", "unlearning.iteration=null"],
    "ft": ["unlearning.algorithm=ft", *EMPIRICAL],
    "dpsgd": ["training.dp_sgd={l2_norm_clip: 1.0, target_epsilon: 50, target_delta: 1e-5, seed: 7}",
              "training.pretrained=false", "unlearning.algorithm=dp-sgd", "unlearning.iteration=null"],
    "neggrad_plus": ["unlearning.algorithm=neggrad_plus", "unlearning.neggrad_plus={alpha: 0.97}", *EMPIRICAL],
}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=sorted(FAMILIES), default="gc")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--processes", type=int, default=4, help="separate experiment.py runs timed (0: none)")
    parser.add_argument("--config", default=str(QUICKSTART))
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args(argv)

    from src import threads

    budget = threads.prepare()  # before torch loads, as experiment.py does
    from src import catalogue  # noqa: F401  (fills the registries)

    with tempfile.TemporaryDirectory(prefix="bench_seeds-") as work:
        return measure(args, Path(work), budget)


def measure(args, work: Path, budget) -> int:
    import torch

    from src.training import cpu_setup
    from src import runner
    from src.config import load_config, member_config
    from src.training.trainer import Console

    overrides = [*FAMILIES[args.family], *args.override, "device=cpu", f"checkpoints_dir={work / 'ckpt'}"]
    config = load_config(args.config, [*overrides, f"seeds={args.members}", f"logs_dir={work / 'ensemble'}"])
    console = Console(quiet=True)
    cpu_setup.configure(config, budget, torch.device("cpu"))  # the threads experiment.py would choose
    plan = runner.make_plan(config)
    print(f"{args.family}: {args.members} members, {torch.get_num_threads()} torch threads; "
          f"{plan.as_dict()['ensemble']}")
    print(load())
    if config.training.pretrained == "auto":
        runner.ensure_pretrained_members(config, "cpu", console)  # the pretrained models, untimed
    # warm-up, untimed: lazy imports (scikit-learn), first kernels
    runner.run(member_config(config, 0).model_copy(update={"logs_dir": str(work / "warm-up")}), args.config, "cpu",
               console)

    clock = time.perf_counter()
    summary = runner.run(config, args.config, "cpu", console)
    ensemble = time.perf_counter() - clock
    unlearn = {"ensemble": sum(m["timings"]["unlearn_seconds"] for m in summary["members"])}

    clock = time.perf_counter()
    unlearn["in_process"] = 0.0
    for i in range(args.members):
        single = member_config(config, i).model_copy(update={"logs_dir": str(work / "singles")})
        unlearn["in_process"] += runner.run(single, args.config, "cpu", console)["timings"]["unlearn_seconds"]
    in_process = time.perf_counter() - clock

    rates = {"ensemble": args.members / ensemble, "in_process": args.members / in_process,
             **{f"{path}_unlearning": args.members / seconds for path, seconds in unlearn.items()}}
    print(f"unlearning phase alone: {unlearn['ensemble']:.1f} s as one ensemble, {unlearn['in_process']:.1f} s "
          "as single runs")
    print(f"seeds: {args.members} in one run: {ensemble:.1f} s")
    print(f"{args.members} single runs in this process: {in_process:.1f} s")
    if args.processes:
        clock = time.perf_counter()
        for i in range(args.processes):
            single = member_config(config, i)
            command = [sys.executable, str(ROOT / "experiment.py"), "--config", args.config, "--quiet",
                       *[a for o in overrides for a in ("--override", o)],
                       "--override", f"global_seed={single.global_seed}", "--override", "seeds=1",
                       "--override", f"logs_dir={work / 'processes'}"]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"experiment.py failed: {done.stderr.strip().splitlines()[-1:]}")
        separate = (time.perf_counter() - clock) / args.processes
        rates["processes"] = 1 / separate
        print(f"separate experiment.py processes: {separate:.2f} s each ({args.processes} timed)")
    if config.training.dp_sgd is not None:
        rates.update(dp_sgd_training(config))
    print(load())
    for path, rate in rates.items():
        print(f"members_per_second_{path}={rate:.3f}")
    return 0


def dp_sgd_training(config) -> dict:
    """The DP-SGD training alone (what dp_sgd_ensemble.py vectorises): the members as one
    DPSGDEnsemble against each member's single DP-SGD training, one after another."""
    from src.config import member_config
    from src.data.datamodule import get_datamodule
    from src.training.dp_sgd_ensemble import DPSGDEnsemble
    from src.training.trainer import Console, build_model, pretrain

    data = get_datamodule(config, "cpu")
    singles = [member_config(config, i) for i in range(config.seeds)]
    clock = time.perf_counter()
    ensemble = DPSGDEnsemble(singles, data, "cpu")
    ensemble.fit()
    together = time.perf_counter() - clock
    clock = time.perf_counter()
    for single in singles:
        pretrain(single, data, build_model(single, data.input_shape, "cpu"), lambda row: None, Console(quiet=True))
    alone = time.perf_counter() - clock
    print(f"DP-SGD training alone: {config.seeds} members as one ensemble (chunks of {ensemble.model.chunk}) "
          f"{together:.1f} s, one after another {alone:.1f} s")
    return {"training_ensemble": config.seeds / together, "training_in_process": config.seeds / alone}


if __name__ == "__main__":
    sys.exit(main())

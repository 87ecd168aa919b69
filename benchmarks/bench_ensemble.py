"""Throughput of an ensemble against separate runs (run by hand): the quick start's
unlearning (noisy phase + fine-tuning + the same evaluations) for M members vectorised
(src/training/ensemble.py) against the single-run trainer, in one process, from the same
pretrained model. Separate runs are timed on a sample and counted per run (no process
start-up, no log files: the comparison favours them).

    python benchmarks/bench_ensemble.py [--members 256] [--separate 8] [--device cpu|cuda]
                                        [--threads N] [--chunk C]

Last line: `ensemble_speedup=<members per second, ensemble / separate>`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src import catalogue  # noqa: E402,F401  (fills the registries)
from src.config import load_config  # noqa: E402
from src.data.datamodule import get_datamodule  # noqa: E402
from src.runner import attach_run, load_pretrained, make_plan  # noqa: E402
from src.training.ensemble import EnsembleModel, EnsembleTrainer, attach_ensemble, member_seeds  # noqa: E402
from src.training.trainer import Console, Trainer, build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart_mnist5k.yaml"


class NoLog:
    def log(self, row):
        pass

    def flush(self):
        pass


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--separate", type=int, default=8, help="separate runs timed (the rest extrapolated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--chunk", type=int, help="members per vmap chunk (default: the ensemble's)")
    parser.add_argument("--config", default=str(QUICKSTART))
    parser.add_argument("--processes", type=int, default=0, help="separate experiment.py runs to time (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="experiment.py runs at a time with --processes")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = load_config(args.config, [f"device={device.type}"])
    console = Console(quiet=True)
    data = get_datamodule(config, device)
    model = build_model(config, data.input_shape, device)
    meta = load_pretrained(config, model, device, console, data)
    start = model.theta.detach().clone()
    seeds = member_seeds(config.global_seed, args.members)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(data.retain)} retain examples, {config.unlearning.epochs} epochs")

    def separate(seed):
        member_config = config.model_copy(update={"global_seed": seed})
        single = build_model(config, data.input_shape, device)
        with torch.no_grad():
            single.theta.copy_(start)
        trainer = Trainer(member_config, data, single, attach_run(make_plan(member_config), device, meta), NoLog(),
                          console)
        trainer.unlearn()
        trainer.test()

    separate(seeds[0])  # warm-up
    sync(device)
    clock = time.perf_counter()
    for seed in seeds[:args.separate]:
        separate(seed)
    sync(device)
    per_run = (time.perf_counter() - clock) / args.separate

    def ensemble(members):
        ens = EnsembleModel(build_model(config, data.input_shape, device), start[None].expand(len(members), -1),
                            args.chunk)
        trainer = EnsembleTrainer(config, data, ens, attach_ensemble(make_plan(config), device, members, meta),
                                  members)
        trainer.unlearn()
        trainer.test()

    ensemble(seeds[:2])  # warm-up
    sync(device)
    clock = time.perf_counter()
    ensemble(seeds)
    sync(device)
    total = time.perf_counter() - clock
    per_member = total / args.members
    print(f"separate runs: {per_run:.3f} s per run ({args.separate} timed); {args.members} would take "
          f"{per_run * args.members:.1f} s")
    print(f"ensemble of {args.members}: {total:.1f} s, {per_member:.4f} s per member")
    print(f"ensemble_speedup={per_run / per_member:.2f}")
    if args.processes:
        per_process = separate_processes(args, meta["path"], seeds[:args.processes])
        print(f"separate experiment.py runs: {per_process:.3f} s of wall time per run ({args.processes} runs, "
              f"{args.workers} at a time); {args.members} would take {per_process * args.members:.1f} s")
        print(f"ensemble_speedup_processes={per_process / per_member:.2f}")
    return 0


def separate_processes(args, checkpoint: str, seeds) -> float:
    """Wall seconds per run of real experiment.py processes, `args.workers` at a time."""
    with tempfile.TemporaryDirectory() as logs:
        commands = [[sys.executable, str(ROOT / "experiment.py"), "--config", args.config, "--device", args.device,
                     "--override", f"global_seed={seed}", "--override", f"training.pretrained={checkpoint}",
                     "--override", f"logs_dir={logs}"] for seed in seeds]
        environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        clock = time.perf_counter()
        running = []
        for command in commands:
            if len(running) == args.workers:
                _finished(running.pop(0))
            running.append(subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True))
        for process in running:
            _finished(process)
        return (time.perf_counter() - clock) / len(commands)


def _finished(process) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a separate run failed (exit {process.returncode}): {err[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())

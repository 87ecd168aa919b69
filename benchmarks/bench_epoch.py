"""Seconds per epoch: this repository's path against the reference's, quiet or contended (run by hand).

    python benchmarks/bench_epoch.py [--device cpu|cuda] [--only a,b,c,d] [--epochs 3]
        [--contend 0,1,3] [--repeat 5] [--steps c=60] [--workers 0,2]

For each case, our path (tensors resident on the device, batched augmentation, the
project's trainer code, the CPU thread and memory defaults experiment.py applies) and the
reference's path (a torchvision-style Dataset with per-image transforms in a DataLoader,
num_workers 0 and 2, batches copied to the device, torch's default threads, the network
in its plain NCHW layout) run the same model and the same optimizer step.

Every measurement is a fresh process started from a neutral environment (OMP_NUM_THREADS,
MKL_NUM_THREADS, OMP_WAIT_POLICY and GOMP_SPINCOUNT removed; --keep-env keeps them), so
that each path starts from its own defaults as a researcher's shell would. Reported: the
median of --epochs timed epochs after a warm-up, and reference / ours at the reference's
best worker count.

--contend K runs K busy processes (one spinning Python loop each) beside every
measurement and stops them afterwards; a list (0,1,3) gives one table block per K.
--repeat R measures our path R times, each in its own process, and reports the largest
over the smallest epoch time of the R runs (the run-to-run flip). --steps times only the
first N batches of each epoch and scales them to a whole epoch (case c is 352 batches of
convolutions); "c=60" limits case c only. Cases:
  (a) tiny_net pretraining on MNIST-sized data (54,000 x 28 x 28; MNIST from --mnist-root
      when present, else synthetic digits-like images)
  (b) one unlearning epoch of Gradient Clipping (noisy steps, then fine-tuning) on the same
  (c) tiny_net_cifar on CIFAR-10-sized data (45,000 x 32 x 32 x 3, synthetic)
  (d) DP-SGD on 512-d features (45,000, synthetic), three_layer_net
The last line is `speedup_mnist_train=<ratio>` (case a, the first K).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
CASES = {
    "a": "(a) tiny_net train, MNIST-sized 54k",
    "b": "(b) Gradient Clipping unlearn epoch",
    "c": "(c) tiny_net_cifar train, 45k",
    "d": "(d) DP-SGD three_layer_net, 45k x 512",
}
RESULT = "RESULT "


# =============================================================================================
# One measurement, in its own process: `--measure CASE --path ours|reference [--worker W]`


def measure(args) -> dict:
    if args.path == "ours":  # exactly what experiment.py does before torch is loaded
        from src import allocator, threads

        budget = threads.prepare(args.our_threads)
        allocator.keep_freed_memory()
    else:
        budget = None
    import torch

    case = {"a": case_train_mnist, "b": case_unlearn, "c": case_train_cifar, "d": case_dp_sgd}[args.measure]
    return case(args, budget, torch)


def configure_ours(budget, model_name, input_shape, device, steps_per_epoch) -> None:
    """What experiment.py's cpu_setup.configure does for a run of the reference's length
    (400 pretraining + 50 unlearning epochs, as its CIFAR and MNIST configs): threads sized
    to a step's arithmetic, torch.compile where the run's arithmetic pays for it. Called
    before the model is built."""
    import torch

    from src.models.model import ModelFactory
    from src.models.work import training_step_flops
    from src.training import compiled

    if device != "cpu":
        torch.set_num_threads(budget.choose(None))
        return
    flops = training_step_flops(ModelFactory.create_model(model_name, 10, input_shape, seed=0), input_shape, 128)
    torch.set_num_threads(budget.choose(flops))
    if compiled.worth_compiling(flops, 450 * steps_per_epoch):
        compiled.enable(128)


def time_epochs(run_epoch, epochs: int, device, torch) -> dict:
    """run_epoch(limit) runs at most `limit` batches and returns the fraction of an epoch it
    ran; the times are scaled to whole epochs. One warm-up call first."""
    run_epoch(warmup=True)
    walls, cpus = [], []
    for _ in range(epochs):
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fraction = run_epoch(warmup=False)
        if device == "cuda":
            torch.cuda.synchronize()
        walls.append((time.perf_counter() - wall) / fraction)
        cpus.append((time.process_time() - cpu) / fraction)
    from src.training import compiled

    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus),
            "epoch_seconds": walls, "epoch_cpu_seconds": cpus,
            "threads": torch.get_num_threads(), "compiled": compiled.enabled()}


def limited(batches, steps, warmup):
    """The batches to run now (a few for a warm-up), and the fraction of the epoch they are."""
    total = len(batches)
    count = min(total, max(1, min(20, total // 4))) if warmup else min(total, steps or total)
    return batches[:count], count / total


# -- data -------------------------------------------------------------------------------------

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
QUICKSTART = ROOT / "configs" / "quickstart_mnist5k.yaml"


def mnist_like(n: int, seed: int = 0):
    """Blobs of ink on black, 28 x 28 uint8, ten classes by position."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    rows = 6 + 2 * (labels % 5)
    cols = 6 + 3 * (labels // 5)
    for i in range(n):  # setup only, not timed
        images[i, rows[i]:rows[i] + 10, cols[i]:cols[i] + 6] = 255
    return images, labels.astype(np.int64)


def load_mnist_train(root: str | None):
    if root:
        try:
            from src.data.mnist_files import load_mnist

            images, labels = load_mnist(root, train=True)
            return images[:54000], labels[:54000]
        except Exception:  # absent or unreadable: synthetic
            pass
    return mnist_like(54000)


def cifar_like():
    import numpy as np

    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (45000, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 45000).astype(np.int64)


class PerImageDataset:
    """The reference's data path: PIL image -> torchvision transforms, one image at a time."""

    def __init__(self, images, labels, transform):
        from PIL import Image

        self.images = [Image.fromarray(im) for im in images]
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def reference_transform(kind: str):
    import torchvision.transforms as T

    if kind == "mnist":
        return T.Compose([T.RandomRotation(10), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def reference_loader(dataset, workers, device):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers, pin_memory=device != "cpu",
                      persistent_workers=workers > 0)


def run_loader(loader, steps, warmup, body) -> float:
    """Up to `steps` batches of the loader through body(x, y); the fraction of an epoch run."""
    total = len(loader)
    count = min(total, max(1, min(20, total // 4))) if warmup else min(total, steps or total)
    for i, (x, y) in enumerate(loader):
        if i == count:
            break
        body(x, y)
    return count / total


def sgd_step(model, optimizer, x, y):
    from torch.nn import functional as F

    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


# -- cases ------------------------------------------------------------------------------------


def case_train(args, budget, torch, images, labels, kind, model_name):
    """(a)/(c): pretraining epochs, ours or the reference's per-image DataLoader."""
    from src import catalogue  # noqa: F401  (fills the registries)
    from src.config import load_config
    from src.data.base_datamodule import Split
    from src.data.batches import make_generator, shuffled_batches
    from src.data.image_transforms import cifar_augmentation, mnist_augmentation, normalise_images
    from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer
    from src.training.steps import make_step
    from src.training.trainer import build_model

    device = args.device
    config = load_config(QUICKSTART, [f"device={device}", f"model.name={model_name}"])
    shape = (28, 28, 1) if kind == "mnist" else (32, 32, 3)
    mean, std = (MNIST_MEAN, MNIST_STD) if kind == "mnist" else (CIFAR_MEAN, CIFAR_STD)
    if args.path == "ours":
        configure_ours(budget, model_name, shape, device, -(-len(labels) // 128))
    model = build_model(config, shape, device)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), constant_schedule(0.06))
    steps = args.steps
    if args.path == "ours":
        x_all = normalise_images(images, mean, std, device)
        y_all = torch.as_tensor(labels, device=device)
        augment = mnist_augmentation(mean, std, device) if kind == "mnist" else cifar_augmentation(mean, std, device)
        generator = make_generator(0, device)
        step = make_step(model, Split(x_all, y_all), augment, optimizer, 128)  # the trainer's step

        def ours(warmup):
            batches, fraction = limited(shuffled_batches(len(y_all), 128, generator, device), steps, warmup)
            for idx in batches:
                step(idx, generator)
            return fraction

        return time_epochs(ours, args.epochs, device, torch)

    model.channels_last = False  # the reference's network: NCHW, as PyTorch lays it out by default
    loader = reference_loader(PerImageDataset(images, labels, reference_transform(kind)), args.worker, device)

    def reference(warmup):
        return run_loader(loader, steps, warmup, lambda x, y: sgd_step(
            model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True)))

    return time_epochs(reference, args.epochs, device, torch)


def case_train_mnist(args, budget, torch):
    images, labels = load_mnist_train(args.mnist_root)
    return case_train(args, budget, torch, images, labels, "mnist", "tiny_net")


def case_train_cifar(args, budget, torch):
    images, labels = cifar_like()
    return case_train(args, budget, torch, images, labels, "cifar", "tiny_net_cifar")


def case_unlearn(args, budget, torch):
    """(b): one Gradient Clipping unlearning epoch (T noisy steps, then fine-tuning)."""
    from torch.nn import functional as F

    from src import catalogue  # noqa: F401  (fills the registries)
    from src.config import load_config
    from src.data.base_datamodule import DataModule, Split, split_indices
    from src.data.image_transforms import mnist_augmentation, normalise_images
    from src.runner import attach_run, make_plan
    from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer
    from src.training.trainer import Console, Trainer, build_model

    device = args.device
    images, labels = load_mnist_train(args.mnist_root)
    config = load_config(QUICKSTART, [f"device={device}", "unlearning.epochs=1", "unlearning.iteration.grad_clip=1"])
    indices = split_indices(len(labels), 0.1, 0.1, 142)
    x_all = normalise_images(images, MNIST_MEAN, MNIST_STD, device)
    y_all = torch.as_tensor(labels, device=device)
    split = lambda idx: Split(x_all[idx.to(device)], y_all[idx.to(device)])  # noqa: E731
    data = DataModule(train=split(indices.train), val=split(indices.val[:2048]), forget=split(indices.forget[:2048]),
                      retain=split(indices.retain), test=split(indices.val[:128]), indices=indices, num_classes=10,
                      input_shape=(28, 28, 1), augmentation=mnist_augmentation(MNIST_MEAN, MNIST_STD, device))
    if args.path == "ours":
        configure_ours(budget, "tiny_net", (28, 28, 1), device, -(-len(indices.retain) // 128))

        class Silent:
            def log(self, row):
                pass

            def flush(self):
                pass

        def ours(warmup):
            plan = make_plan(config, data.sizes)
            model = build_model(config, (28, 28, 1), device)
            algorithm = attach_run(plan, torch.device(device))
            Trainer(config, data, model, algorithm, Silent(), Console(quiet=True)).unlearn()
            return 1.0

        return time_epochs(ours, args.epochs, device, torch)

    noisy_steps = make_plan(config, data.sizes).privacy.noisy_steps
    retain = indices.retain.numpy()
    loader = reference_loader(PerImageDataset(images[retain], labels[retain], reference_transform("mnist")),
                              args.worker, device)
    model = build_model(config, (28, 28, 1), device)
    u = config.unlearning

    def reference(warmup):
        state = {"optimizer": None, "i": 0}

        def body(x, y):
            x, y = x.to(device), y.to(device)
            if state["i"] < noisy_steps:  # the same noisy step, written plainly
                theta = model.theta
                loss = F.cross_entropy(model(x), y)
                (g,) = torch.autograd.grad(loss, theta)
                with torch.no_grad():
                    g = g * torch.clamp(u.iteration.grad_clip / g.norm(), max=1)
                    theta.sub_(u.max_lr * (g + u.weight_decay * theta))
                    theta.add_(0.01 * torch.randn_like(theta))
            else:
                if state["optimizer"] is None:
                    state["optimizer"] = ScheduledOptimizer(make_optimizer(model.theta, config.post_unlearning, 0.0),
                                                            constant_schedule(0.1))
                sgd_step(model, state["optimizer"], x, y)
            state["i"] += 1

        fraction = run_loader(loader, None, warmup, body)
        with torch.no_grad():  # the reference evaluates val and forget after each epoch
            for part in (data.val, data.forget):
                for start in range(0, len(part), 128):
                    model(part.x[start:start + 128])
        return fraction

    return time_epochs(reference, args.epochs, device, torch)


def case_dp_sgd(args, budget, torch):
    """(d): DP-SGD on 45,000 512-d features (per-example gradients, clipping, noise)."""
    from torch.utils.data import TensorDataset

    from src import catalogue  # noqa: F401  (fills the registries)
    from src.config import load_config
    from src.data.base_datamodule import Split
    from src.data.batches import make_generator
    from src.training.dp_sgd import DPSGD, DPSGDCalibration, clipped_gradient_sum
    from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer
    from src.training.trainer import build_model

    device = args.device
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (45000,), generator=generator)
    features = torch.randn(45000, 512, generator=generator) + labels[:, None].float()
    config = load_config(QUICKSTART, [f"device={device}", "model.name=three_layer_net", "dataset.name=cifar10_feature",
                                      "dataset.input_shape=[512]"])
    if args.path == "ours":
        configure_ours(budget, "three_layer_net", (512,), device, 352)
    model = build_model(config, (512,), device)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), constant_schedule(0.06))
    if args.path == "ours":
        calibration = DPSGDCalibration(
            l2_norm_clip=0.5, noise_multiplier=17.7, sampling_rate=128 / 45000, steps=352, sampling="poisson",
            group_size=225, group_rule="tight", target_epsilon=50, target_delta=1e-5, train_epsilon=0.22,
            train_delta=1e-27, achieved_train_epsilon=0.22, certified_epsilon=50, certified_delta=1e-5, seconds=0)
        dp = DPSGD(calibration, model, Split(features.to(device), labels.to(device)), 128, seed=0)
        data_generator = make_generator(0, device)

        def ours(warmup):
            batches, fraction = limited(dp.batches(data_generator), args.steps, warmup)
            for idx in batches:
                dp.step(idx, optimizer)
            return fraction

        return time_epochs(ours, args.epochs, device, torch)

    loader = reference_loader(TensorDataset(features, labels), args.worker, device)

    def body(x, y):  # the same clipping and noise, on batches from the DataLoader
        x, y = x.to(device), y.to(device)
        clipped, _, _ = clipped_gradient_sum(model, x, y, 0.5, torch.ones(len(y), device=device))
        noise = torch.randn(model.theta.shape, device=device)
        model.theta.grad = (clipped + 0.5 * 17.7 * noise) / len(y)
        optimizer.step()

    return time_epochs(lambda warmup: run_loader(loader, args.steps, warmup, body), args.epochs, device, torch)


# =============================================================================================
# The driver: contenders, fresh processes, the table


class Contenders:
    """K processes that each keep one core busy, for the duration of a `with` block."""

    def __init__(self, count: int):
        self.count = count
        self.processes = []

    def __enter__(self):
        for _ in range(self.count):
            self.processes.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                                   stdin=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def neutral_environment(keep: bool) -> dict:
    env = dict(os.environ)
    if not keep:
        for name in THREAD_VARIABLES:
            env.pop(name, None)
    return env


def run_measurement(args, case: str, path: str, worker: int, env: dict) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--measure", case, "--path", path, "--worker", str(worker),
            "--device", args.device, "--epochs", str(epochs_for(args, path)), "--mnist-root", args.mnist_root or ""]
    if args.our_threads:
        argv += ["--our-threads", str(args.our_threads)]
    steps = steps_for(args.steps, case)
    if steps:
        argv += ["--steps", str(steps)]
    for attempt in range(2):  # once more if it failed (a shared machine has its moments)
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        for line in done.stdout.splitlines():
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        print(f"measurement {case}/{path}/w={worker} failed (attempt {attempt + 1}):\n{done.stderr[-2000:]}",
              file=sys.stderr, flush=True)
    raise RuntimeError(f"measurement {case}/{path}/w={worker} failed twice")


def epochs_for(args, path: str) -> int:
    """Timed epochs of one measurement: --reference-epochs for the reference's path, if given."""
    return args.reference_epochs if path == "reference" and args.reference_epochs else args.epochs


def steps_for(spec: str | None, case: str) -> int | None:
    """'60' (every case) or 'c=60,d=100' (those cases)."""
    if not spec:
        return None
    for part in spec.split(","):
        if "=" in part:
            name, value = part.split("=", 1)
            if name.strip() == case:
                return int(value)
        else:
            return int(part)
    return None


def flip(values) -> float:
    return max(values) / min(values) if len(values) > 1 else 1.0


def drive(args) -> int:
    cases = [c for c in args.only.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"--only: unknown case(s) {unknown}; known: {', '.join(CASES)}")
    workers = [int(w) for w in args.workers.split(",")]
    levels = [int(k) for k in args.contend.split(",")]
    env = neutral_environment(args.keep_env)
    import torch

    print(f"device {args.device}, torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} at the start; {args.epochs} timed epoch(s) per "
          f"measurement, ours repeated {args.repeat}x in fresh processes", flush=True)
    rows = []
    for k in levels:
        with Contenders(k):
            for case in cases:
                ours = [run_measurement(args, case, "ours", 0, env) for _ in range(args.repeat)]
                references = {w: run_measurement(args, case, "reference", w, env) for w in workers}
                row = {"K": k, "case": case, "ours": ours, "references": {str(w): r for w, r in references.items()}}
                rows.append(row)
                print(format_row(row, workers), flush=True)
                if args.json:  # as it goes: a long run that breaks keeps what it measured
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print_table(rows, workers, f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


def summarise(row) -> tuple[float, float, float]:
    walls = [r["seconds"] for r in row["ours"]]
    best_reference = min(r["seconds"] for r in row["references"].values())
    return statistics.median(walls), best_reference, flip(walls)


def format_row(row, workers) -> str:
    ours, best, flipped = summarise(row)
    cpus = [r["cpu_seconds"] for r in row["ours"]]
    refs = " ".join(f"{row['references'][str(w)]['seconds']:9.3f}" for w in workers)
    threads = f"{row['ours'][0]['threads']}{'c' if row['ours'][0].get('compiled') else ''}"
    return (f"{row['K']:>2} {CASES[row['case']]:40s} {ours:9.3f} {statistics.median(cpus):8.3f} {threads:>4} {refs} "
            f"{best / ours:8.1f}x {flipped:6.2f}x {flip(cpus):6.2f}x")


def print_table(rows, workers, note: str) -> None:
    header = (f"{'K':>2} {'case':40s} {'ours s/ep':>9s} {'ours cpu':>8s} {'thr':>4s} "
              + " ".join(f"{'ref w=' + str(w):>9s}" for w in workers) + f" {'ref/ours':>9s} {'flip':>7s} {'cpu flip':>7s}")
    print(f"\nseconds per epoch (median); ours over {len(rows[0]['ours'])} fresh process(es), flip = slowest / fastest "
          f"of them (wall, and CPU time); thr = our threads (c: compiled); K busy processes beside each measurement; "
          f"{note}")
    print(header)
    for row in rows:
        print(format_row(row, workers))
    for row in rows:
        ours, best, flipped = summarise(row)
        print(f"speedup_{row['case']}_K{row['K']}={best / ours:.2f} flip_{row['case']}_K{row['K']}={flipped:.2f}")
    first = [r for r in rows if r["case"] == "a"]
    if first:
        ours, best, _ = summarise(first[0])
        print(f"speedup_mnist_train={best / ours:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="seconds per epoch, ours vs the reference's path, quiet or contended")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (after a warm-up)")
    parser.add_argument("--reference-epochs", type=int,
                        help="timed epochs of the reference's path (default: --epochs); its epochs are the long ones")
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers to try for the reference path")
    parser.add_argument("--only", default="a,b,c,d", help="which cases to run")
    parser.add_argument("--contend", default="0", help="busy processes beside the measurement, e.g. 0,1,3")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes measuring our path (flip check)")
    parser.add_argument("--steps", help="time the first N batches of each epoch, scaled: N, or per case 'c=60'")
    parser.add_argument("--keep-env", action="store_true", help="keep OMP_NUM_THREADS & co. for the measurements")
    parser.add_argument("--our-threads", type=int, help="force our path's thread count (as experiment.py --threads)")
    parser.add_argument("--mnist-root", default="data", help="torchvision MNIST root, used when present")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement (wall and CPU seconds, threads)")
    # internal: one measurement in this process
    parser.add_argument("--measure", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--table", metavar="FILE", help="print the table of an earlier --json FILE and stop")
    args = parser.parse_args(argv)
    if args.table:
        rows = json.loads(Path(args.table).read_text())
        print_table(rows, sorted(int(w) for w in rows[0]["references"]), f"from {args.table}")
        return 0
    if args.measure:
        if args.steps is not None:
            args.steps = int(args.steps)
        print(RESULT + json.dumps(measure(args)), flush=True)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())

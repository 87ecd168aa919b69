"""Seconds per epoch: this repository's data path against the reference's (run by hand).

    python benchmarks/bench_epoch.py [--device cpu|cuda] [--epochs 3] [--only a,b,c,d]

For each case, our path (tensors resident on the device, batched augmentation, the
project's trainer code) and the reference's data path (a torchvision-style Dataset with
per-image transforms in a DataLoader, num_workers 0 and 2, batches copied to the device)
run the same model and the same optimizer step. Reported: the median of several epochs
after a warm-up epoch, and the ratio reference / ours (at the reference's best worker
count). Cases:
  (a) tiny_net pretraining on MNIST-sized data (54,000 x 28 x 28; MNIST from --mnist-root
      when present, else synthetic digits-like images)
  (b) one unlearning epoch of Gradient Clipping (noisy steps, then fine-tuning) on the same
  (c) tiny_net_cifar on CIFAR-10-sized data (45,000 x 32 x 32 x 3, synthetic)
  (d) DP-SGD on 512-d features (45,000, synthetic), three_layer_net
The last line is `speedup_mnist_train=<ratio>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import load_config  # noqa: E402
from src.data.base_datamodule import DataModule, Split, split_indices  # noqa: E402
from src.data.batches import make_generator, shuffled_batches  # noqa: E402
from src.data.image_transforms import cifar_augmentation, mnist_augmentation, normalise_images  # noqa: E402
from src.runner import attach_run, make_plan  # noqa: E402
from src.training.dp_sgd import DPSGD, DPSGDCalibration, clipped_gradient_sum  # noqa: E402
from src.training.optim import ScheduledOptimizer, constant_schedule, make_optimizer  # noqa: E402
from src.training.steps import make_step  # noqa: E402
from src.training.trainer import Console, Trainer, build_model  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart_mnist5k.yaml"
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# -- data ---------------------------------------------------------------------------------


def mnist_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST when --mnist-root has it, else blobs of ink on black, 28 x 28 uint8."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    rows = 6 + 2 * (labels % 5)
    cols = 6 + 3 * (labels // 5)
    for i in range(n):  # setup only, not timed
        images[i, rows[i]:rows[i] + 10, cols[i]:cols[i] + 6] = 255
    return images, labels.astype(np.int64)


def load_mnist_train(root: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    if root:
        try:
            from src.data.mnist_files import load_mnist

            images, labels = load_mnist(root, train=True)
            return images[:54000], labels[:54000], "MNIST"
        except Exception as e:  # absent or unreadable: fall back to synthetic
            print(f"(MNIST not used: {e}; synthetic digits instead)")
    images, labels = mnist_like(54000)
    return images, labels, "synthetic"


class PerImageDataset(Dataset):
    """The reference's data path: PIL image -> torchvision transforms, one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
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


# -- timing ---------------------------------------------------------------------------------


def median_epoch_seconds(run_epoch, epochs: int, device) -> float:
    run_epoch()  # warm-up
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        run_epoch()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def sgd_step(model, optimizer, x, y):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def mnist_config(device, model="tiny_net"):
    return load_config(QUICKSTART, [f"device={device}", f"model.name={model}"])


# -- cases ------------------------------------------------------------------------------------


def case_train(images, labels, kind, model_name, device, epochs, workers):
    """(a)/(c): one pretraining epoch, ours vs the reference's per-image DataLoader."""
    config = mnist_config(device, model_name)
    shape = (28, 28, 1) if kind == "mnist" else (32, 32, 3)
    mean, std = (MNIST_MEAN, MNIST_STD) if kind == "mnist" else (CIFAR_MEAN, CIFAR_STD)
    model = build_model(config, shape, device)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), constant_schedule(0.06))
    x_all = normalise_images(images, mean, std, device)
    y_all = torch.as_tensor(labels, device=device)
    augment = mnist_augmentation(mean, std, device) if kind == "mnist" else cifar_augmentation(mean, std, device)
    generator = make_generator(0, device)
    step = make_step(model, Split(x_all, y_all), augment, optimizer, 128)  # the trainer's step

    def ours():
        for idx in shuffled_batches(len(y_all), 128, generator, device):
            step(idx, generator)

    results = {"ours": median_epoch_seconds(ours, epochs, device)}
    dataset = PerImageDataset(images, labels, reference_transform(kind))
    for w in workers:
        loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=w, pin_memory=device != "cpu",
                            persistent_workers=w > 0)

        def reference():
            for x, y in loader:
                sgd_step(model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True))

        results[f"reference w={w}"] = median_epoch_seconds(reference, epochs, device)
    return results


def case_unlearn(images, labels, device, epochs, workers):
    """(b): one Gradient Clipping unlearning epoch (T noisy steps, then fine-tuning)."""
    config = load_config(QUICKSTART, [f"device={device}", "unlearning.epochs=1", "unlearning.iteration.grad_clip=1"])
    x_all = normalise_images(images, MNIST_MEAN, MNIST_STD, device)
    y_all = torch.as_tensor(labels, device=device)
    indices = split_indices(len(y_all), 0.1, 0.1, 142)
    split = lambda idx: Split(x_all[idx.to(device)], y_all[idx.to(device)])  # noqa: E731
    data = DataModule(train=split(indices.train), val=split(indices.val[:2048]), forget=split(indices.forget[:2048]),
                      retain=split(indices.retain), test=split(indices.val[:128]), indices=indices, num_classes=10,
                      input_shape=(28, 28, 1), augmentation=mnist_augmentation(MNIST_MEAN, MNIST_STD, device))

    class Silent:
        def log(self, row):
            pass

        def flush(self):
            pass

    def ours():
        plan = make_plan(config, data.sizes)
        model = build_model(config, (28, 28, 1), device)
        algorithm = attach_run(plan, torch.device(device))
        Trainer(config, data, model, algorithm, Silent(), Console(quiet=True)).unlearn()

    results = {"ours": median_epoch_seconds(ours, epochs, device)}
    noisy_steps = make_plan(config, data.sizes).privacy.noisy_steps
    retain_images, retain_labels = images[indices.retain.numpy()], labels[indices.retain.numpy()]
    dataset = PerImageDataset(retain_images, retain_labels, reference_transform("mnist"))
    model = build_model(config, (28, 28, 1), device)
    u = config.unlearning
    for w in workers:
        loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=w, persistent_workers=w > 0)

        def reference():
            optimizer = None
            for i, (x, y) in enumerate(loader):
                x, y = x.to(device), y.to(device)
                if i < noisy_steps:  # the same noisy step, written plainly
                    theta = model.theta
                    loss = F.cross_entropy(model(x), y)
                    (g,) = torch.autograd.grad(loss, theta)
                    with torch.no_grad():
                        g = g * torch.clamp(u.iteration.grad_clip / g.norm(), max=1)
                        theta.sub_(u.max_lr * (g + u.weight_decay * theta))
                        theta.add_(0.01 * torch.randn_like(theta))
                else:
                    if optimizer is None:
                        optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.post_unlearning, 0.0),
                                                       constant_schedule(0.1))
                    sgd_step(model, optimizer, x, y)
            # the reference evaluates val and forget after each epoch
            with torch.no_grad():
                for part in (data.val, data.forget):
                    for start in range(0, len(part), 128):
                        model(part.x[start:start + 128])

        results[f"reference w={w}"] = median_epoch_seconds(reference, epochs, device)
    return results


def case_dp_sgd(device, epochs, workers):
    """(d): DP-SGD on 45,000 512-d features (per-example gradients, clipping, noise)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (45000,), generator=generator)
    features = torch.randn(45000, 512, generator=generator) + labels[:, None].float()
    config = load_config(QUICKSTART, [f"device={device}", "model.name=three_layer_net", "dataset.name=cifar10_feature",
                                      "dataset.input_shape=[512]"])
    model = build_model(config, (512,), device)
    calibration = DPSGDCalibration(
        l2_norm_clip=0.5, noise_multiplier=17.7, sampling_rate=128 / 45000, steps=352, sampling="poisson",
        group_size=225, group_rule="tight", target_epsilon=50, target_delta=1e-5, train_epsilon=0.22,
        train_delta=1e-27, achieved_train_epsilon=0.22, certified_epsilon=50, certified_delta=1e-5, seconds=0)
    x_all, y_all = features.to(device), labels.to(device)
    dp = DPSGD(calibration, model, Split(x_all, y_all), 128, seed=0)
    optimizer = ScheduledOptimizer(make_optimizer(model.theta, config.training, 5e-4), constant_schedule(0.06))
    data_generator = make_generator(0, device)

    def ours():
        for idx in dp.batches(data_generator):
            dp.step(idx, optimizer)

    results = {"ours": median_epoch_seconds(ours, epochs, device)}
    from torch.utils.data import TensorDataset

    dataset = TensorDataset(features, labels)
    for w in workers:
        loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=w, persistent_workers=w > 0)

        def reference():  # the same clipping and noise, on batches from the DataLoader
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                clipped, _, _ = clipped_gradient_sum(model, x, y, 0.5, torch.ones(len(y), device=device))
                noise = torch.randn(model.theta.shape, device=device)
                model.theta.grad = (clipped + 0.5 * 17.7 * noise) / len(y)
                optimizer.step()

        results[f"reference w={w}"] = median_epoch_seconds(reference, epochs, device)
    return results


# -- main -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="seconds per epoch, ours vs the reference's data path")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (after one warm-up)")
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers to try for the reference path")
    parser.add_argument("--only", default="a,b,c,d", help="which cases to run")
    parser.add_argument("--mnist-root", default="data", help="torchvision MNIST root, used when present")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    cases = set(args.only.split(","))
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    if cases & {"a", "b"}:
        images, labels, source = load_mnist_train(args.mnist_root)
    if "a" in cases:
        rows.append((f"(a) tiny_net train, {source} 54k", case_train(images, labels, "mnist", "tiny_net",
                                                                       args.device, args.epochs, workers)))
    if "b" in cases:
        rows.append(("(b) Gradient Clipping unlearn epoch", case_unlearn(images, labels, args.device, args.epochs,
                                                                         workers)))
    if "c" in cases:
        rng = np.random.default_rng(1)
        cifar = rng.integers(0, 256, (45000, 32, 32, 3), dtype=np.uint8)
        cifar_labels = rng.integers(0, 10, 45000).astype(np.int64)
        rows.append(("(c) tiny_net_cifar train, 45k", case_train(cifar, cifar_labels, "cifar", "tiny_net_cifar",
                                                                 args.device, args.epochs, workers)))
    if "d" in cases:
        rows.append(("(d) DP-SGD three_layer_net, 45k x 512", case_dp_sgd(args.device, args.epochs, workers)))

    print(f"\n{'case':42s} {'ours s/epoch':>13s} " + " ".join(f"{'ref w=' + str(w):>11s}" for w in workers)
          + f" {'ref/ours':>9s}")
    speedups = {}
    for name, result in rows:
        best_reference = min(v for k, v in result.items() if k != "ours")
        speedups[name] = best_reference / result["ours"]
        print(f"{name:42s} {result['ours']:13.3f} " + " ".join(f"{result[f'reference w={w}']:11.3f}" for w in workers)
              + f" {speedups[name]:9.1f}x")
    for name, ratio in speedups.items():
        print(f"speedup_{name[1]}={ratio:.2f}")
    if "a" in cases:
        print(f"speedup_mnist_train={speedups[rows[0][0]]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

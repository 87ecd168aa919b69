"""Frozen ImageNet ResNet-18 features of CIFAR-10 / CIFAR-100: the work behind
``feature_extractor.py`` (which only parses arguments, so that ``--help`` is instant).

What the original does and what is kept: torchvision ``resnet18`` with ImageNet weights
(IMAGENET1K_V1) and the final fc removed (it ends with the adaptive average pool), eval
mode, no gradients; each 32x32 image resized to 224x224 (bilinear), scaled to [0, 1] and
normalised with the **CIFAR** statistics (not ImageNet's: unusual, but what the published
features used; ``--normalization imagenet`` is the alternative); features in torchvision's
index order. What differs (docs/differences.md#plumbing): both datasets, local data and
weights (``--weights PATH`` for machines without network), and batched resizing on the
device instead of per-image PIL transforms (see :func:`preprocess`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from src.data.cifar_files import CIFAR_MEAN_STD, load_cifar
from src.data.feature_files import feature_file_path, save_feature_file
from src.errors import UserError

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGE_SIZE = 224
# Per-socket-operation timeout while torchvision downloads the weights (a firewall that drops
# packets would otherwise hang urllib); a slow but working download is not affected.
DOWNLOAD_SOCKET_TIMEOUT_S = 20.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def _imagenet_weights_message(reason: str) -> str:
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return (
        f"--weights imagenet: could not get torchvision's ResNet-18 ImageNet weights ({reason}). "
        f"On a machine with network download {url} and copy it to {target} "
        "(torch.hub.get_dir()/checkpoints/, set by TORCH_HOME), or pass --weights PATH to that file"
    )


def load_backbone(weights: str) -> nn.Module:
    """ResNet-18 without its final fc (ends with the adaptive average pool): images -> [B, 512, 1, 1]."""
    import socket

    import torchvision

    if weights == "imagenet":
        from torchvision.models import ResNet18_Weights

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
        try:
            model = torchvision.models.resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except (OSError, RuntimeError, ValueError) as exc:  # no network, HTTP error, bad hash
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise UserError(_imagenet_weights_message(reason)) from exc
        finally:
            socket.setdefaulttimeout(previous)
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(
                f"--weights {weights}: no such file; give 'imagenet' or the path of a torchvision "
                "ResNet-18 state_dict (e.g. resnet18-f37072fd.pth from https://download.pytorch.org/models/)"
            )
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:
            raise UserError(f"--weights {path}: not a readable torch.save file ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"--weights {path}: expected a state_dict (a dict of tensors) of torchvision's resnet18")
        model = torchvision.models.resnet18(weights=None)
        result = model.load_state_dict(state, strict=False)
        problems = [f"missing {result.missing_keys[:5]}" if result.missing_keys else "",
                    f"unexpected {result.unexpected_keys[:5]}" if result.unexpected_keys else ""]
        if any(problems):
            raise UserError(f"--weights {path}: not a torchvision resnet18 state_dict "
                            f"({'; '.join(x for x in problems if x)})")
    return nn.Sequential(*list(model.children())[:-1])


def preprocess(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 32, 32, 3] (HWC) on the device -> normalised float32 [B, 3, 224, 224].

    The reference ran torchvision's ``Resize(224)`` (bilinear) on each 32x32 PIL image, then
    ``ToTensor`` and ``Normalize``. For upsampling, PIL's bilinear filter is the same
    half-pixel-centred interpolation as ``interpolate(..., align_corners=False)`` with edge
    clamping (antialiasing only matters when shrinking), but PIL resamples in two passes,
    horizontal then vertical, and rounds each pass to uint8. A single float interpolate
    differs from PIL by up to 0.86/255 (mean 0.27/255); doing the same two passes with the
    same rounding (half up) here reproduces PIL exactly: tests/test_feature_extractor.py
    checks equality on random images.
    """
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(x.shape[-2], IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=False)
    x = x.add_(0.5).floor_().clamp_(0, 255)  # PIL's horizontal pass -> uint8
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=False)
    x = x.add_(0.5).floor_().clamp_(0, 255).div_(255)  # vertical pass -> uint8, then ToTensor
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))


class _Batches(torch.utils.data.Dataset):
    """Item i is the i-th batch (a slice): DataLoader workers never touch single images."""

    def __init__(self, images: torch.Tensor, batch_size: int):
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i * self.batch_size : (i + 1) * self.batch_size]


@torch.inference_mode()
def extract(model: nn.Module, images, device: torch.device, mean_std, batch_size: int,
            num_workers: int = 0, desc: str = "") -> torch.Tensor:
    """Features float32 [N, 512] (on the CPU) of uint8 HWC ``images``, in their order."""
    images = torch.from_numpy(images)
    mean = torch.tensor(mean_std[0], dtype=torch.float32, device=device)
    std = torch.tensor(mean_std[1], dtype=torch.float32, device=device)
    out = torch.empty(len(images), 512, dtype=torch.float32)
    loader = torch.utils.data.DataLoader(_Batches(images, batch_size), batch_size=None, shuffle=False,
                                         num_workers=num_workers, pin_memory=device.type == "cuda")
    start = 0
    with tqdm(total=len(images), desc=desc, unit="img", disable=None, file=sys.stderr) as bar:
        for batch in loader:
            x = preprocess(batch.to(device, non_blocking=True), mean, std)
            feats = model(x).flatten(1)
            out[start : start + len(batch)] = feats.float().cpu()
            start += len(batch)
            bar.update(len(batch))
    return out


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"feature_extractor.py: warning: {message}", file=sys.stderr if file is None else file)


@contextlib.contextmanager
def exact_cudnn():
    """Full float32 convolutions (no TF32) and deterministic cuDNN kernels, restored afterwards:
    on a GPU the same image then gives the same features from run to run, close to a CPU's."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32)
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = False, True, False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = saved


def run(args: argparse.Namespace) -> None:
    names = ["cifar10", "cifar100"] if args.dataset == "both" else [args.dataset]
    device = resolve_device(args.device)
    # Read every input first, so that a missing file stops the run before any compute.
    data = {(name, train): load_cifar(args.root, name, train) for name in names for train in (True, False)}
    model = load_backbone(args.weights).to(device).eval()

    for name in names:
        mean_std = CIFAR_MEAN_STD[name] if args.normalization == "cifar" else IMAGENET_MEAN_STD
        for train in (True, False):
            images, labels = data[(name, train)]
            split = "train" if train else "test"
            t0 = time.perf_counter()
            feats = extract(model, images, device, mean_std, args.batch_size, args.num_workers, f"{name} {split}")
            seconds = time.perf_counter() - t0
            path = feature_file_path(args.out, name, train)
            try:
                save_feature_file(path, feats, torch.from_numpy(labels))
            except OSError as exc:
                raise UserError(f"cannot write {path} ({exc.strerror or exc}); choose another --out") from None
            print(f"{name} {split}: {len(images)} images -> features {list(feats.shape)} in {seconds:.1f} s "
                  f"({device.type}); wrote {path}")
    out = Path(args.out).resolve()
    print(f"Done. For the {', '.join(n + '_feature' for n in names)} dataset(s) set dataset.features_root: {out}")

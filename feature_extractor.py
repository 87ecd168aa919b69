"""Frozen ImageNet ResNet-18 features of CIFAR-10 / CIFAR-100, for the ``*_feature`` datasets.

Figure 3 trains small networks on these 512-d features. Output, in the reference's format
and place (``<out>`` is what configs give as ``dataset.features_root``)::

    <out>/cifar10_features/cifar10_{train,test}_features.pt     {"features": float32 [N, 512],
    <out>/cifar100_features/cifar100_{train,test}_features.pt     "labels": int64 [N]}

Usage::

    python feature_extractor.py --dataset cifar10|cifar100|both --root DATA --out DIR
        [--weights imagenet|PATH] [--batch-size 128] [--device auto|cpu|cuda]
        [--num-workers 0] [--normalization cifar|imagenet] [--debug]

The extraction itself, and what it keeps from and changes in the original, is
src/features/extract.py; this file only parses arguments (``--help`` imports no torch).
"""

from __future__ import annotations

import argparse
import sys
import warnings

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="feature_extractor.py",
        description="Extract frozen ImageNet ResNet-18 features of CIFAR-10 / CIFAR-100 "
        "(the reference's *_features/*.pt files).",
    )
    p.add_argument("--dataset", choices=["cifar10", "cifar100", "both"], required=True)
    p.add_argument("--root", default="./data", help="torchvision data folder holding cifar-10-batches-py/ "
                   "or cifar-100-python/ (default ./data, the reference's dataset.root)")
    p.add_argument("--out", default=".", help="where <name>_features/ folders go; configs use it as "
                   "dataset.features_root (default '.', the reference's hard-coded location)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (torchvision's IMAGENET1K_V1, "
                   "downloaded unless cached) or the path of a local torchvision ResNet-18 state_dict")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers that slice and pin "
                   "batches (the images are in memory already; 0 is usually fastest)")
    p.add_argument("--normalization", choices=["cifar", "imagenet"], default="cifar",
                   help="statistics for Normalize: 'cifar' (the reference's choice) or 'imagenet'")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        p.error(f"--num-workers must be >= 0, got {args.num_workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src import threads

    # before torch is imported (waiting threads sleep); a ResNet-18 takes every core available
    budget = threads.prepare()
    from src.errors import UserError
    from src.features.extract import _one_line_warnings, exact_cudnn, run

    import torch

    torch.set_num_threads(budget.choose(None))

    saved_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warnings
    try:
        with exact_cudnn():
            run(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"feature_extractor.py: error: {exc}", file=sys.stderr)
        return 2  # a user error, as everywhere else
    finally:
        warnings.showwarning = saved_showwarning
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write scikit-learn's bundled 8x8 digits (1,797 images, no download) as examples/digits.npz,
in the format of `dataset.name: arrays`: x_train [N, 8, 8, 1] float32 in [0, 1] (pixels / 16),
y_train [N] int64, x_test, y_test; a fixed 80/20 split.

    python examples/make_digits.py [--out PATH]
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("digits.npz")))
    args = parser.parse_args(argv)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # channels-last, values 0..1
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    n_test = len(y) // 5
    np.savez(args.out, x_train=x[n_test:], y_train=y[n_test:], x_test=x[:n_test], y_test=y[:n_test])
    print(f"wrote {args.out}: {len(y) - n_test} train and {n_test} test images of shape {list(x.shape[1:])}")


if __name__ == "__main__":
    main()

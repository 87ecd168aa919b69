"""The W-infinity-tracking accountant of noisy mini-batch SGD unlearning (Chien, Wang, Chen,
Li, NeurIPS 2024, "Certified Machine Unlearning via Noisy Stochastic Gradient Descent"):
against the K schedules stored in the paper's results, and against closed forms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from src.privacy.pnsgd import (MiniBatchChain, calibrate_sigma, certificate, renyi_bound, sequential_epochs,
                               smallest_epochs, wasserstein_shift)

REFERENCE = json.loads((Path(__file__).parent / "data" / "pnsgd_reference.json").read_text())


def paper_chain(n: int, b: int, sigma: float) -> MiniBatchChain:
    """The paper's code's constants: m = 1e-6 n, L = 1/4 + m, eta = 1/L, M = 1."""
    m = 1e-6 * n
    return MiniBatchChain(n=n, batch_size=b, batches=n // b, m=m, eta=1.0 / (0.25 + m), M=1.0, sigma=sigma)


@pytest.mark.parametrize("case", REFERENCE["k_lists"], ids=lambda c: f"{c['dataset']}-b{c['batch_size']}-s{c['sigma']}")
def test_the_stored_schedules_of_100_requests_are_reproduced_exactly(case):
    n = REFERENCE["constants"]["n"][case["dataset"]]
    chain = paper_chain(n, case["batch_size"], case["sigma"])
    requests = sequential_epochs([1] * len(case["k"]), 0.01, chain, 1.0 / n, alpha_range=(2, 1e5),
                                 neighbouring="replace", first_bound="loose")
    assert [r.epochs for r in requests] == case["k"]
    assert all(r.epsilon <= 0.01 for r in requests)


def test_the_reference_covers_every_batch_size_and_temperature_of_the_paper_s_loop():
    cells = {(c["dataset"], c["batch_size"], c["sigma"]) for c in REFERENCE["k_lists"]}
    assert len(cells) == 48
    full = {c["batch_size"] for c in REFERENCE["k_lists"] if c["batch_size"] > 512}
    assert full == {11264, 9728}


def test_full_batch_shift_is_the_distance_between_the_optima():
    chain = MiniBatchChain(n=1000, batch_size=1000, batches=1, m=0.02, eta=3.7, M=1.0, sigma=0.1)
    assert wasserstein_shift(3, chain) == pytest.approx(2 * 3 * 1.0 / (0.02 * 1000), rel=1e-12)


def test_the_shift_is_the_sum_over_epochs_of_one_batch_s_displacement():
    chain = MiniBatchChain(n=640, batch_size=32, batches=20, m=0.02, eta=3.0, M=1.0, sigma=0.1)
    c = 1 - 3.0 * 0.02
    per_epoch = 2 * 3.0 * 1.0 * 2 / 32  # two differing examples
    series = sum(per_epoch * c ** (20 * t) for t in range(10000))
    assert wasserstein_shift(2, chain) == pytest.approx(series, rel=1e-12)
    capped = MiniBatchChain(n=640, batch_size=32, batches=20, m=0.02, eta=3.0, M=1.0, sigma=0.1, radius=0.1)
    assert wasserstein_shift(2, capped) == 0.2  # both chains stay in the ball of radius R


def test_the_shifted_bound_spends_the_shift_optimally_over_the_steps():
    """Spending shifts a_t with sum c^(N-t) a_t = c^N z costs sum a_t^2; the optimum is
    (c^N z)^2 / sum_t c^(2(N-t))."""
    chain = MiniBatchChain(n=100, batch_size=10, batches=10, m=0.05, eta=2.0, M=1.0, sigma=0.2)
    c, N, z, alpha = chain.c, 3 * 10, 0.7, 7.0
    best = (c**N * z) ** 2 / sum(c ** (2 * (N - t)) for t in range(1, N + 1))
    expected = alpha * best / (2 * chain.eta * chain.sigma**2)
    assert float(renyi_bound(alpha, z, 3, chain)) == pytest.approx(expected, rel=1e-12)
    assert float(renyi_bound(alpha, z, 3, chain, "loose")) > float(renyi_bound(alpha, z, 3, chain))
    assert math.isinf(float(renyi_bound(alpha, z, 0, chain)))


def test_smallest_epochs_is_the_first_that_certifies():
    chain = paper_chain(11264, 128, 0.03)
    for S in (1, 5):
        choice = smallest_epochs(0.05, S, chain, 1 / 11264)
        assert choice.epsilon <= 0.05
        if choice.steps > 1:
            assert certificate(choice.steps - 1, S, chain, 1 / 11264).epsilon > 0.05
    assert smallest_epochs(0.05, 5, chain, 1 / 11264).steps >= smallest_epochs(0.05, 1, chain, 1 / 11264).steps


def test_removal_shrinks_the_batches_and_never_certifies_fewer_epochs_than_replacement():
    chain = MiniBatchChain(n=720, batch_size=24, batches=30, m=0.02, eta=3.7, M=1.0, sigma=0.05)
    removed = sequential_epochs([4, 4, 4], 1.0, chain, 1e-5, neighbouring="remove")
    replaced = sequential_epochs([4, 4, 4], 1.0, chain, 1e-5, neighbouring="replace")
    assert all(a.epochs >= b.epochs for a, b in zip(removed, replaced))
    assert removed[1].shift > replaced[1].shift
    # z_2 = z_1 c^(K_1 J) + Z_B(4) with the batch left after 4 removals
    z2 = removed[0].shift * chain.c ** (removed[0].epochs * 30) + wasserstein_shift(4, chain, 20)
    assert removed[1].shift == pytest.approx(z2, rel=1e-12)


def test_calibrated_sigma_is_the_smallest_that_certifies():
    chain = MiniBatchChain(n=720, batch_size=24, batches=30, m=0.02, eta=3.7, M=1.0, sigma=1.0)
    sigma = calibrate_sigma(1, 0.5, 1, chain, 1e-5)
    from dataclasses import replace

    assert certificate(1, 1, replace(chain, sigma=sigma), 1e-5).epsilon <= 0.5
    assert certificate(1, 1, replace(chain, sigma=sigma * (1 - 1e-6)), 1e-5).epsilon > 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(m=0.0), "m must be a finite number > 0"),
    (dict(eta=100.0), "must be in (0, 1)"),
    (dict(batch_size=50), "do not fit"),
    (dict(radius=0.0), "radius must be > 0"),
])
def test_bad_constants_are_refused(kwargs, message):
    base = dict(n=720, batch_size=24, batches=30, m=0.02, eta=3.7, M=1.0, sigma=0.1)
    with pytest.raises(ValueError, match=re_escape(message)):
        MiniBatchChain(**{**base, **kwargs})


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_sequential_orders_grow_no_faster_than_the_distance():
    """Unlike the weak-triangle chain of Langevin unlearning, a long stream stays cheap:
    the tracked distance converges to Z_B / (1 - c^(K J))."""
    chain = paper_chain(11264, 128, 0.03)
    requests = sequential_epochs([1] * 30, 1.0, chain, 1 / 11264)
    assert max(r.shift for r in requests) < 2 * wasserstein_shift(1, chain)
    assert np.all(np.diff([r.epochs for r in requests[3:]]) == 0)


# Chien, Wang, Chen, Li, NeurIPS 2024, "Certified Machine Unlearning via Noisy Stochastic Gradient
# Descent": unlearning accuracy after one deletion and K = 1 epoch, epsilon 0.05 / 0.1 / 0.5 / 1 /
# 2 / 5, means over 100 chains of its stored results (result/SGD/*/baseline_nonconvergent/1/).
SECTION_7_3 = {
    ("MNIST", "128"): (0.817, 0.873, 0.894, 0.894, 0.895, 0.895),
    ("MNIST", "full"): (0.556, 0.594, 0.799, 0.870, 0.894, 0.898),
    ("CIFAR10", "128"): (0.785, 0.898, 0.980, 0.982, 0.983, 0.983),
    ("CIFAR10", "full"): (0.563, 0.642, 0.872, 0.954, 0.977, 0.983),
    ("CIFAR10_MULTI", "full"): (0.163, 0.235, 0.582, 0.682, 0.727, 0.742),
}


def test_the_published_accuracies_drawn_beside_ours_are_the_paper_s():
    published = json.loads((Path(__file__).parent / "data" / "pnsgd_published.json").read_text())["datasets"]
    for (dataset, batch), means in SECTION_7_3.items():
        cells = published[dataset][batch]
        got = [cells[eps]["mean"] for eps in ("0.05", "0.1", "0.5", "1", "2", "5")]
        assert got == pytest.approx(means, abs=1.01e-3), (dataset, batch)
        assert all(cells[eps]["n"] == 100 for eps in cells)

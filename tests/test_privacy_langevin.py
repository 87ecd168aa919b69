"""The Langevin unlearning accountant against the original code's numbers
(tests/data/langevin_reference.json), closed forms and invariants."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from src.privacy.langevin import (Chain, calibrate_sigma, certificate, epsilon0, learning_epsilon, lsi_constant,
                                  sequential_renyi, sequential_steps, smallest_steps)

REFERENCE = json.loads((Path(__file__).parent / "data" / "langevin_reference.json").read_text())
LAM = 1e-6  # the code's --lam: m = lam * n


def chain(dataset: str, sigma: float) -> Chain:
    c = REFERENCE["constants"][dataset]
    n = c["n"]
    m = LAM * n
    return Chain(n=n, m=m, eta=1.0 / (c["L_base"] + m), M=c["M"], sigma=sigma)


def decimals(value: float) -> int:
    """How many decimals the table gives (the numbers are rounded to them)."""
    text = repr(value)
    return len(text.split(".")[1]) if "." in text else 0


# --- Figure 3c: K, alpha* and epsilon0 against sigma (the main_lmc search) ---------------

@pytest.mark.parametrize("dataset", ["MNIST", "CIFAR10_MULTI"])
def test_sigma_sweep_reproduces_K_alpha_and_epsilon0(dataset):
    table = REFERENCE["sigma_sweep"][dataset]
    for i, sigma in enumerate(table["sigma"]):
        c = chain(dataset, sigma)
        choice = smallest_steps(1.0, 100, c, 1 / c.n, alpha_range=(1.0, 1e4), step_lattice=10)
        assert choice.steps == table["K"][i], sigma
        assert choice.epsilon <= 1.0
        if "alpha" in table:
            assert round(choice.alpha, 2) == table["alpha"][i], sigma
        learned = learning_epsilon(100, c, 1 / c.n, alpha_range=(1.0, 1e4))
        assert round(learned.epsilon, decimals(table["epsilon0"][i])) == table["epsilon0"][i], sigma
        assert learned.steps == 0


def test_the_lattice_K_is_the_first_lattice_point_at_or_above_the_exact_K():
    c = chain("MNIST", 0.03)
    for S, eps in ((1, 0.1), (100, 1.0), (50, 0.5)):
        exact = smallest_steps(eps, S, c, 1 / c.n, alpha_range=(1.0, 1e4)).steps
        lattice = smallest_steps(eps, S, c, 1 / c.n, alpha_range=(1.0, 1e4), step_lattice=10).steps
        assert (lattice - 1) % 10 == 0 and lattice - 10 < exact <= lattice


# --- The closed form K* ----------------------------------------------------------------

@pytest.mark.parametrize("case", REFERENCE["closed_form"]["cases"], ids=lambda c: f"{c['dataset']}-S{c['S']}")
def test_closed_form_K_star(case):
    c = chain(case["dataset"], 0.03)
    choice = smallest_steps(case["epsilon"], case["S"], c, 1 / c.n, alpha_range=(1.0001, 1e4))
    assert choice.steps == case["K"]
    if "alpha" in case:
        assert round(choice.alpha, 1) == case["alpha"]
    if "lattice" in case:
        lattice = smallest_steps(case["epsilon"], case["S"], c, 1 / c.n, alpha_range=(1.0, 1e4), step_lattice=10)
        assert lattice.steps == case["lattice"]


@pytest.mark.parametrize("dataset", ["MNIST", "CIFAR10"])
def test_learning_alone_for_one_example(dataset):
    c = chain(dataset, 0.03)
    expected = REFERENCE["closed_form"]["learning_epsilon_S1"][dataset]
    assert round(learning_epsilon(1, c, 1 / c.n, alpha_range=(1.0001, 1e4)).epsilon, 4) == expected


def test_K_is_the_smallest_integer_by_the_certificate_itself():
    """Independent of the closed form: eps(K) <= target < eps(K - 1), each evaluated as
    a minimum over alpha of the Renyi bound plus the conversion term."""
    c = chain("CIFAR10", 0.05)
    for S, eps in ((1, 0.2), (20, 1.0), (300, 2.0)):
        K = smallest_steps(eps, S, c, 1 / c.n).steps
        assert certificate(K, S, c, 1 / c.n, alpha_range=(1.0001, 1e4)).epsilon <= eps
        assert certificate(K - 1, S, c, 1 / c.n, alpha_range=(1.0001, 1e4)).epsilon > eps


def test_the_certificate_is_the_bound_at_the_reported_order():
    c = chain("MNIST", 0.03)
    result = certificate(500, 10, c, 1e-5)
    by_hand = math.exp(-500 * c.eta * c.m / result.alpha) * 4 * result.alpha * 100 * c.M**2 / (
        c.m * c.sigma**2 * c.n**2) + math.log(1e5) / (result.alpha - 1)
    assert result.epsilon == pytest.approx(by_hand, rel=1e-12)
    # a coarse grid never beats the minimiser
    grid = np.linspace(1.01, 1e4, 200001)
    values = np.exp(-500 * c.eta * c.m / grid) * epsilon0(grid, 10, c) + math.log(1e5) / (grid - 1)
    assert result.epsilon <= values.min() + 1e-12


def test_balle_conversion_is_tighter_so_it_needs_no_more_steps():
    c = chain("MNIST", 0.03)
    for S in (1, 100, 1000):
        mironov = smallest_steps(1.0, S, c, 1e-5)
        balle = smallest_steps(1.0, S, c, 1e-5, conversion="balle2020")
        assert balle.steps <= mironov.steps
        assert certificate(mironov.steps, S, c, 1e-5, conversion="balle2020").epsilon <= mironov.epsilon


def test_K_can_be_zero_when_learning_alone_certifies_and_min_steps_allows_it():
    c = chain("MNIST", 0.03)  # learning alone is 0.314-DP for one example
    assert smallest_steps(1.0, 1, c, 1 / c.n).steps == 1  # the code's floor
    assert smallest_steps(1.0, 1, c, 1 / c.n, min_steps=0).steps == 0


def test_unreachable_targets_are_refused():
    c = chain("MNIST", 0.03)
    with pytest.raises(ValueError, match="cannot be reached"):
        smallest_steps(1e-4, 1, c, 1e-5, alpha_range=(1.0001, 10.0))


def test_lsi_constant():
    assert lsi_constant(0.03, 0.011982) == pytest.approx(2 * 0.03**2 / 0.011982)


# --- sigma calibration -------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["MNIST", "CIFAR10", "CIFAR10_MULTI"])
def test_sigma_calibration_table(dataset):
    table = REFERENCE["sigma_calibration"]
    c = chain(dataset, 1.0)
    for K in ("1", "5"):
        for eps, expected in zip(table["epsilons"], table[dataset][K]):
            sigma = calibrate_sigma(int(K), eps, 1, c, 1 / c.n, alpha_range=(2.0, 1e4))
            assert round(sigma, 5) == expected, (K, eps)


def test_calibrated_sigma_is_the_smallest_feasible_one_and_matches_the_closed_form():
    c = chain("MNIST", 1.0)
    delta, K, eps = 1 / c.n, 1, 1.0
    sigma = calibrate_sigma(K, eps, 1, c, delta)
    assert certificate(K, 1, replace(c, sigma=sigma), delta, alpha_range=(2.0, 1e4)).epsilon <= eps
    assert certificate(K, 1, replace(c, sigma=sigma * (1 - 1e-6)), delta, alpha_range=(2.0, 1e4)).epsilon > eps
    # sigma^2 = min over alpha of a(alpha) / (eps - log(1/delta)/(alpha-1)), a = the bound at sigma = 1
    alphas = np.linspace(2.0, 1e4, 2_000_001)
    room = eps - math.log(1 / delta) / (alphas - 1)
    a = np.exp(-K * c.eta * c.m / alphas) * epsilon0(alphas, 1, c)
    closed = math.sqrt(np.min(np.where(room > 0, a / room, np.inf)))
    assert sigma == pytest.approx(closed, rel=1e-6)


# --- Sequential requests -------------------------------------------------------------------

@pytest.mark.parametrize("nr", ["20", "10", "5"])
def test_sequential_k_lists_of_cifar10_multi(nr):
    c = chain("CIFAR10_MULTI", 0.03)
    expected = REFERENCE["sequential"]["k_lists"][nr]
    requests = sequential_steps([int(nr)] * (100 // int(nr)), 1.0, c, 1 / c.n, alpha_range=(2.0, 1e5),
                                neighbouring="replace")
    assert [r.steps for r in requests] == expected
    assert all(r.epsilon <= 1.0 for r in requests)


def test_one_request_of_a_sequence_is_the_single_request_accountant():
    c = chain("MNIST", 0.03)
    (request,) = sequential_steps([100], 1.0, c, 1 / c.n, alpha_range=(1.0001, 1e4), neighbouring="replace")
    assert request.steps == smallest_steps(1.0, 100, c, 1 / c.n).steps == 1997


def test_the_recursion_doubles_the_order_at_each_earlier_request():
    c = chain("CIFAR10", 0.03)
    a = 7.0
    e0 = lambda alpha, n=c.n: 4 * alpha * 25 * c.M**2 / (c.m * c.sigma**2 * n**2)  # S = 5
    d = lambda k, alpha: math.exp(-k * c.eta * c.m / alpha)
    w = lambda alpha: (alpha - 0.5) / (alpha - 1)
    first = d(10, 4 * a) * e0(4 * a)
    second = d(20, 2 * a) * w(2 * a) * (e0(4 * a) + first)
    third = d(30, a) * w(a) * (e0(2 * a) + second)
    assert sequential_renyi(a, [5, 5, 5], [10, 20, 30], c, "replace") == pytest.approx(third, rel=1e-12)
    # removal: each request's pair uses |D| before it (n, n - 5, n - 10): larger bounds
    assert sequential_renyi(a, [5, 5, 5], [10, 20, 30], c, "remove") > third


def test_removal_needs_at_least_as_many_steps_as_replacement():
    c = chain("MNIST", 0.03)
    replace_ = sequential_steps([10] * 5, 1.0, c, 1 / c.n, neighbouring="replace")
    remove = sequential_steps([10] * 5, 1.0, c, 1 / c.n, neighbouring="remove")
    assert all(b.steps >= a.steps for a, b in zip(replace_, remove))
    assert [r.n_before for r in remove] == [c.n - 10 * i for i in range(5)]
    with pytest.raises(ValueError, match="at least one must remain"):
        sequential_steps([c.n], 1.0, c, 1 / c.n)

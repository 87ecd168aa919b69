"""Ensembles (src/training/ensemble.py): N members of one config as theta [N, d].

An ensemble of one must be the single run (trainer.py) bit for bit on CPU, in every
phase and for every algorithm; member i of a larger ensemble must be the single run with
member i's seed (its own streams: initialisation, data order, augmentation, noise)."""

from __future__ import annotations

import pytest
import torch

from src.config import load_config
from src.data.datamodule import get_datamodule
from src.runner import attach_run, load_pretrained, make_plan
from src.training.ensemble import (EnsembleModel, EnsembleTrainer, attach_ensemble, member_seeds,
                                   pretrain_ensemble)
from src.training.trainer import Console, Trainer, build_model, pretrain

GC = {}
MC = {"unlearning.algorithm": "contractive_coefficients", "unlearning.init_model_clip": 7,
      "unlearning.weight_decay": 500, "unlearning.iteration": None,
      "unlearning.contractive_coefficients": {"epsilon_target": 1, "sigma": 0.01, "model_clip": 0.01,
                                              "noise_addition_after_projection": True}}
MC_BEFORE = {**MC, "unlearning.contractive_coefficients": {
    "epsilon_target": 1, "sigma": 0.01, "model_clip": 0.01, "noise_addition_before_projection": True,
    "grad_clip": 1.0}}
OP = {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None,
      "unlearning.dp-baseline": {"epsilon_target": 1}}
RETRAIN = {"unlearning.algorithm": "retrain", "unlearning.iteration": None, "unlearning.init_model_clip": 5,
           "unlearning.init_sigma": 0.01, "unlearning.retrain": {"clip_and_noise": True}}


class Rows:
    def __init__(self):
        self.rows = []

    def log(self, row):
        self.rows.append(row)

    def flush(self):
        pass


class CapturingTrainer(Trainer):
    """The single run, keeping theta at the end of its noisy phase."""

    def _end_noisy_phase(self, epoch):
        self.noisy_output = self.model.theta.detach().clone()
        super()._end_noisy_phase(epoch)


def single_run(config, data):
    model = build_model(config, data.input_shape, "cpu")
    meta = load_pretrained(config, model, "cpu", Console(quiet=True), data)
    start = model.theta.detach().clone()
    rows = Rows()
    trainer = CapturingTrainer(config, data, model, attach_run(make_plan(config), "cpu", meta), rows,
                               Console(quiet=True))
    trainer.unlearn()
    trainer.test()
    return start, meta, trainer, rows.rows


def ensemble_run(config, data, starts, meta, seeds, chunk=None):
    network = build_model(config, data.input_shape, "cpu")
    model = EnsembleModel(network, starts, chunk)
    trainer = EnsembleTrainer(config, data, model, attach_ensemble(make_plan(config), "cpu", seeds, meta), seeds)
    trainer.unlearn()
    trainer.test()
    return trainer


def _config(make_config, name, overrides):
    path, _ = make_config(name, overrides)
    return load_config(path)


@pytest.mark.parametrize("name, overrides", [("gc", GC), ("mc", MC), ("mc_before", MC_BEFORE), ("op", OP),
                                             ("retrain", RETRAIN)])
def test_an_ensemble_of_one_is_the_single_run_bit_for_bit(make_config, name, overrides):
    config = _config(make_config, f"ens1-{name}", overrides)
    data = get_datamodule(config, "cpu")
    start, meta, single, rows = single_run(config, data)
    ensemble = ensemble_run(config, data, start[None], meta, member_seeds(config.global_seed, 1))

    assert torch.equal(ensemble.noisy_output[0], single.noisy_output)
    assert torch.equal(ensemble.model.theta.detach()[0], single.model.theta.detach())
    assert ensemble.noisy_steps == single.noisy_steps and ensemble.certificate == single.certificate
    # every evaluated number of the single run, under its own metric name
    metrics = [k for k in ("retain_loss", "retain_accuracy", "Val (Unlearn)_loss", "Val (Unlearn)_accuracy",
                           "Forget (Unlearn)_accuracy", "Val (Post Noise Addition)_loss",
                           "Retain (Post Noise Addition)_accuracy", "Val (Post Unlearning Setup)_accuracy",
                           "Test_accuracy", "Test_loss")]
    for key in metrics:
        expected = [r[key] for r in rows if key in r]
        got = [float(r[key][0]) for r in ensemble.history if key in r]
        assert expected and got == expected, key


def test_ensemble_pretraining_of_one_is_the_single_pretraining_bit_for_bit(make_config):
    config = _config(make_config, "ens-pre", {"training.epochs": 2})
    data = get_datamodule(config, "cpu")
    model = build_model(config, data.input_shape, "cpu")
    rows = Rows()
    pretrain(config, data, model, rows.log, Console(quiet=True))
    history = []
    ensemble = pretrain_ensemble(config, data, member_seeds(config.global_seed, 1), "cpu", history=history)
    assert torch.equal(ensemble.theta.detach()[0], model.theta.detach())
    assert [float(h["Val (Train)_accuracy"][0]) for h in history] == \
        [r["Val (Train)_accuracy"] for r in rows.rows if "Val (Train)_accuracy" in r]


def test_each_member_is_the_single_run_of_its_own_seed(make_config):
    """Member i = the single run with global_seed member_seed(seed, i): its own noise, data
    order and augmentation. One chunk of three (vmap) agrees to float rounding; chunks of
    one run on the single run's kernels, bit for bit."""
    config = _config(make_config, "ens3", {"unlearning.epochs": 1})
    data = get_datamodule(config, "cpu")
    seeds = member_seeds(config.global_seed, 3)
    assert seeds[0] == config.global_seed and len(set(seeds)) == 3
    model = build_model(config, data.input_shape, "cpu")
    meta = load_pretrained(config, model, "cpu", Console(quiet=True), data)
    start = model.theta.detach().clone()
    singles = []
    for seed in seeds:  # every member starts from the config's pretrained model
        member_config = config.model_copy(update={"global_seed": seed})
        member = build_model(config, data.input_shape, "cpu")
        with torch.no_grad():
            member.theta.copy_(start)
        trainer = CapturingTrainer(member_config, data, member, attach_run(make_plan(member_config), "cpu", meta),
                                   Rows(), Console(quiet=True))
        trainer.unlearn()
        singles.append(trainer)

    starts = start[None].expand(3, -1)
    vectorised = ensemble_run(config, data, starts, meta, seeds, chunk=3)
    one_by_one = ensemble_run(config, data, starts, meta, seeds, chunk=1)
    for i, single in enumerate(singles):
        assert torch.equal(one_by_one.noisy_output[i], single.noisy_output)
        assert torch.equal(one_by_one.model.theta.detach()[i], single.model.theta.detach())
        assert torch.allclose(vectorised.noisy_output[i], single.noisy_output, rtol=0, atol=1e-6)
        assert torch.allclose(vectorised.model.theta.detach()[i], single.model.theta.detach(), rtol=1e-4,
                              atol=1e-5)
    # members share no stream: their noisy phases end in different places
    out = vectorised.noisy_output
    assert min(float((out[i] - out[j]).norm()) for i in range(3) for j in range(i)) > 1e-3

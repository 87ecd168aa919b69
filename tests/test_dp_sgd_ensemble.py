"""DP-SGD training of an ensemble's members as theta [N, d] (src/training/dp_sgd_ensemble.py).

Member i must be the single DP-SGD training (src/training/dp_sgd.py) of member_config(config,
i): its own initialisation, batches and noise. A chunk of one member runs the single run's
own operations, so `chunk=1` must give the single trainings bit for bit (parameters, rows,
record); a chunk of every member (one vmap over members and examples, Poisson batches of
different sizes padded with weight 0) must agree with them to float rounding."""

from __future__ import annotations

import pytest
import torch

from src.config import load_config, member_config
from src.data.datamodule import get_datamodule
from src.training.dp_sgd import DPSGD, calibration_for
from src.training.dp_sgd_ensemble import DPSGDEnsemble
from src.training.trainer import Console, build_model, pretrain
from tests.conftest import QUICKSTART

def dp_config(tmp_path, members, *overrides):
    return load_config(QUICKSTART, [
        "training.epochs=1", "training.pretrained=false", "dataset.batch_size=512",  # 8 steps: seconds
        "training.dp_sgd={l2_norm_clip: 1.0, target_epsilon: 50, target_delta: 1e-5, seed: 7}",
        "compat.group_privacy=tight",  # calibrates in seconds; the exact rule has its own tests
        "unlearning.algorithm=dp-sgd", "unlearning.iteration=null", f"seeds={members}",
        f"logs_dir={tmp_path / 'logs'}", f"checkpoints_dir={tmp_path / 'ckpt'}", *overrides])


def single_training(config, data):
    model = build_model(config, data.input_shape, "cpu")
    rows = []
    meta = pretrain(config, data, model, rows.append, Console(quiet=True))
    return model.theta.detach().clone(), rows, meta


def untimed(record):
    return {k: v for k, v in record.items() if k != "seconds"}


@pytest.mark.parametrize("sampling, members", [("poisson", 3), ("shuffle", 2)])
def test_members_are_the_single_dp_sgd_trainings(tmp_path, sampling, members):
    config = dp_config(tmp_path, members, f"compat.dp_sgd_sampling={sampling}")
    data = get_datamodule(config, "cpu")
    singles = [member_config(config, i) for i in range(members)]
    assert len({s.training.dp_sgd.seed for s in singles}) == members
    if sampling == "poisson":  # the members' batches differ in size: the padding is exercised
        calibration = calibration_for(config, len(data.train), len(data.forget))
        first = [len(DPSGD(calibration, build_model(s, data.input_shape, "cpu"), data.train, 512,
                           s.training.dp_sgd.seed).batches(None)[0]) for s in singles]
        assert len(set(first)) > 1, first
    alone = [single_training(s, data) for s in singles]

    exact = DPSGDEnsemble(singles, data, "cpu", chunk=1)
    exact.fit()
    together = DPSGDEnsemble(singles, data, "cpu", chunk=members)
    assert together.model.chunk == members
    together.fit()
    for i, (theta, rows, meta) in enumerate(alone):
        assert torch.equal(exact.model.theta.detach()[i], theta), i
        assert exact.rows[i] == rows
        # the calibration (and so the certificate) is the single run's; only its timing differs
        assert untimed(exact.record()) == untimed(together.record()) == untimed(meta["dp_sgd"])
        got = together.model.theta.detach()[i]
        assert torch.allclose(got, theta, rtol=1e-4, atol=1e-6), (i, (got - theta).abs().max())
        assert len(together.rows[i]) == len(rows)
        for a, b in zip(together.rows[i], rows):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)
    # the members are not one model: each trained on its own batches with its own noise
    assert not torch.allclose(together.model.theta[0], together.model.theta[1])


def test_every_members_record_is_checked_before_the_ensemble_fine_tunes(tmp_path):
    """The 'dp-sgd' baseline on theta [N, d]: each member's certificate rests on its own
    model's record, so a member whose model was not trained for it is refused, named."""
    from src.errors import CheckpointError
    from src.runner import make_plan

    config = dp_config(tmp_path, 2)
    algorithm = make_plan(config).algorithm
    good = {"dp_sgd": untimed(algorithm.calibration.__dict__), "provenance": "this run"}
    rows = []
    algorithm.context.member_metas = (good, good)
    algorithm.prepare(None, rows.append)
    assert algorithm.finished and rows[-1] == {"dp_sigma": algorithm.calibration.noise_multiplier}
    for bad in ({"provenance": "this run"},  # no DP-SGD record
                {**good, "dp_sgd": {**good["dp_sgd"], "noise_multiplier": 1.0}}):  # another calibration
        algorithm.context.member_metas = (good, bad)
        with pytest.raises(CheckpointError, match=r"\(member 1\)"):
            algorithm.prepare(None, rows.append)

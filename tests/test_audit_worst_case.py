"""The audit's synthetic worst case (configs/worst_case/, docs/audit.md): data and a model
whose clipped gradient pushes two trajectories apart at the full clip, on which the audit
reaches the Gaussian mechanism the certificate stands for."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from src.audit.__main__ import main as audit_main
from src.config import load_config
from src.data.datamodule import get_datamodule
from src.models.model import ModelFactory
from tests.conftest import REPO

WORST_CASE = REPO / "configs" / "worst_case"


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_the_worst_case_gradient_is_far_above_any_clip_and_points_away_from_the_middle(side):
    config = load_config(WORST_CASE / "gc-eps1.yaml")
    data = get_datamodule(config, "cpu")
    model = ModelFactory.create_model("worst_case", 2, data.input_shape, seed=0)
    u = data.retain.x[0]
    assert torch.equal(data.retain.x, u.expand_as(data.retain.x)) and float(u.norm()) == 1.0
    with torch.no_grad():
        model.weight.copy_(side * 0.01 * u + 1e-3 * torch.randn(8, generator=torch.Generator().manual_seed(1)))
    loss = F.cross_entropy(model(data.retain.x[:100]), data.retain.y[:100])
    (grad,) = torch.autograd.grad(loss, model.weight)
    # -s sign(<w, u>) u with s = 100: any clip C1 < 100 cuts it to C1 pointing away from <w, u> = 0
    assert torch.allclose(grad, -side * 100 * u, rtol=1e-5, atol=1e-5)


def test_gradient_clipping_on_the_worst_case_reaches_the_gaussian_its_certificate_stands_for(tmp_path, capsys,
                                                                                               session_checkpoints):
    """The original's calibration (certified 7.08; 6.57 after the Renyi conversion) in one
    noisy step: the instance is that Gaussian mechanism (2 C0 + 2 eta C1 apart, noise
    sigma), and the Gaussian-DP estimate of 4,096 chains shows more than 80% of the
    certificate; the Clopper-Pearson bound stays below it."""
    chains = 4096
    code = audit_main(["--config", str(WORST_CASE / "gc-original.yaml"), "--start", "adversarial", "--chains",
                       str(chains), "--out", str(tmp_path), "--quiet",
                       "--override", f"checkpoints_dir={session_checkpoints}"])
    capsys.readouterr()
    assert code == 0
    (directory,) = list(tmp_path.iterdir())
    result = json.loads((directory / "audit.json").read_text())
    s = result["slack"]
    assert s["certificate"] == pytest.approx(7.08, abs=0.005) and s["after_conversion"] == pytest.approx(6.57, abs=0.01)
    config = load_config(WORST_CASE / "gc-original.yaml")
    u = config.unlearning
    shift = 2 * u.init_model_clip + 2 * u.max_lr * u.iteration.grad_clip  # starts 2 C0 apart, pushed apart once
    assert s["measured_shift"] == pytest.approx(shift, abs=4 * s["noise_std"] * math.sqrt(2 / chains))
    assert s["instance_mu"] == pytest.approx(math.sqrt(2), abs=4 * math.sqrt(2 / chains))  # mu of eps_R = 1
    gaussian = result["gaussian_estimate"]["epsilon"]
    assert 0.8 * s["certificate"] <= gaussian <= s["certificate"]
    assert result["lower_bound"] <= s["certificate"] and not result["exceeds_certificate"]

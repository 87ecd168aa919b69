"""Where a certificate's slack is (src/audit/slack.py), against independent computations:
the original's calibration of Gradient Clipping (certified 7.08) loses 0.5 to the Renyi
conversion (6.57) and half of the rest to the drift budget its data never used (3.33 for
the instance of the two adversarial starts); Output Perturbation from starts 2 C0 apart
leaves no drift slack."""

from __future__ import annotations

import json
import math

import pytest

from src.audit.__main__ import main as audit_main
from src.config import load_config
from src.privacy.gaussian import theta_eps
from src.runner import make_plan
from scipy import optimize

ORIGINAL = {"unlearning.iteration": {"epsilon_renyi_target": 1, "grad_clip": 10}}


def exact_epsilon(mu: float, delta: float) -> float:
    return optimize.brentq(lambda eps: theta_eps(eps, mu) - delta, 0.0, 60.0)


def audit_json(capsys, path, out, *args) -> dict:
    code = audit_main(["--config", str(path), "--out", str(out), "--quiet", "--start", "adversarial",
                       *map(str, args)])
    capsys.readouterr()
    assert code == 0
    (directory,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((directory / "audit.json").read_text())


def test_the_original_calibrations_slack_is_conversion_then_unused_drift(make_config, tmp_path, capsys):
    path, _ = make_config("original-slack", ORIGINAL)
    config = load_config(path)
    u = config.unlearning
    privacy = make_plan(config).privacy
    chains = 64
    result = audit_json(capsys, path, tmp_path, "--chains", chains)
    s = result["slack"]
    assert s["certificate"] == pytest.approx(7.08, abs=0.005)
    # linear Renyi DP with eps_R is the Gaussian mechanism with mu = sqrt(2 eps_R); eps_R is the
    # original's label 1 plus the float32 rounding margin of the updates (about 1e-4 relative)
    eps_r = privacy.details["epsilon_renyi_of_sigmas"]
    assert 1 < eps_r < 1 + 1e-3
    assert s["after_conversion"] == pytest.approx(exact_epsilon(math.sqrt(2 * eps_r), 1e-5), rel=1e-6)
    assert s["after_conversion"] == pytest.approx(6.57, abs=0.005)
    # independently: the starts 2 C0 apart, contracted by rho = 1 - eta lambda per step,
    # against the noise of every step contracted by the steps after it
    rho, steps = 1 - u.max_lr * u.weight_decay, privacy.noisy_steps
    shift = 2 * u.init_model_clip * rho ** steps
    noise = math.sqrt(sum(sigma ** 2 * rho ** (2 * (steps - 1 - t)) for t, sigma in enumerate(privacy.sigma_t)))
    assert s["noise_std"] == pytest.approx(noise, rel=1e-9)
    assert exact_epsilon(shift / noise, 1e-5) == pytest.approx(3.33, abs=0.01)
    # what the chains show: the shift within 4 standard errors, the noise as known
    assert s["measured_shift"] == pytest.approx(shift, abs=4 * noise * math.sqrt(2 / chains))
    assert s["measured_std"] == pytest.approx(noise, rel=0.15)
    assert s["exact_instance"] == pytest.approx(exact_epsilon(s["measured_shift"] / noise, 1e-5), rel=1e-6)
    assert s["lost_to_conversion"] == pytest.approx(7.08 - 6.57, abs=0.01)
    assert s["lost_to_unused_drift"] == pytest.approx(s["after_conversion"] - s["exact_instance"], rel=1e-9)
    # the audit shows no more than the instance, the instance no more than the certificate
    assert result["lower_bound"] <= result["gaussian_estimate"]["epsilon"] + 1e-9 or result["lower_bound"] == 0
    assert max(result["lower_bound"], s["exact_instance"]) < s["after_conversion"] < s["certificate"]


def test_output_perturbation_from_starts_a_diameter_apart_has_no_drift_slack(make_config, tmp_path, capsys):
    """The analytic calibration is exact: certificate = after conversion; the adversarial
    starts are the diameter apart, so the instance is the mechanism itself."""
    path, _ = make_config("op-slack", {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None,
                                        "unlearning.dp-baseline": {"epsilon_target": 1, "calibration": "analytic"}})
    chains = 512
    s = audit_json(capsys, path, tmp_path, "--chains", chains)["slack"]
    assert s["certificate"] == 1 and s["after_conversion"] == pytest.approx(1.0, abs=1e-6)
    assert s["measured_std"] == pytest.approx(s["noise_std"], rel=0.1)
    # mu = 2 C0 / sigma measured to within a few standard errors (sqrt(2 / N) in mu)
    mu = s["instance_mu"]
    mu_true = optimize.brentq(lambda m: exact_epsilon(m, 1e-5) - 1.0, 0.01, 2.0)
    assert mu == pytest.approx(mu_true, abs=4 * math.sqrt(2 / chains))

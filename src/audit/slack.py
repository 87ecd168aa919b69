"""Where a Gaussian mechanism's certificate has slack, beside what the audit shows.

For a noisy phase whose output is the same affine map of Gaussian noise from either start
(Output Perturbation; Gradient Clipping, its gradients seen as a drift common to both
worlds or not), the two worlds' outputs differ by a mean shift m along the direction
between the starts, with known noise sigma_out along it. Four epsilons at the audit's
delta, each at most the one before (up to the shift measured from finitely many chains):

  certificate      what the accountant certifies;
  after conversion the exact epsilon of the Gaussian mechanism whose curve the accountant's
                   bound stands for (Gradient Clipping: linear Renyi DP alpha eps_R, the
                   Gaussian with mu = sqrt(2 eps_R); Output Perturbation: mu = 2 C0 /
                   sigma). The gap is lost to the Renyi-to-(epsilon, delta) conversion (or,
                   for Output Perturbation, to a classical calibration);
  exact instance   the exact epsilon of the audited instance, the Gaussian mechanism with
                   mu = m / sigma_out (m measured on all chains). The gap from the line
                   before is the budget the accountant keeps for what the data never did:
                   gradients pushing the two trajectories apart (PABI's drift), starts
                   closer than the diameter. A point estimate from N chains (with a 95%
                   interval), not a bound: on few chains it can lie above the certificate;
  the audit        the Gaussian-DP estimate and the Clopper-Pearson lower bound, which can
                   show no more than the instance's epsilon, less by their confidence.

Methods without a linear noise path (Model Clipping projects after its noise) or without a
Gaussian curve behind their accountant report None for the steps they lack.
"""

from __future__ import annotations

import math

import numpy as np

from src.privacy.gaussian import gaussian_epsilon


def slack(algorithm, delta: float, projection_a: np.ndarray, projection_b: np.ndarray,
          certified_epsilon: float | None, noise_scale: float = 1.0) -> dict:
    """The certificate's slack for one audit; `projection_*`: the projection score of every
    chain of each world (along the direction from world B's start to world A's)."""
    shift = float(np.mean(projection_a) - np.mean(projection_b))
    measured_std = float(math.sqrt((np.var(projection_a, ddof=1) + np.var(projection_b, ddof=1)) / 2))
    noise = algorithm.output_noise_std()
    mu_conversion = algorithm.gaussian_equivalent_mu()
    out = {"certificate": certified_epsilon, "delta": delta, "measured_shift": shift,
           "measured_std": measured_std, "noise_std": None, "after_conversion": None, "exact_instance": None,
           "instance_mu": None}
    if mu_conversion is not None:
        out["after_conversion"] = gaussian_epsilon(mu_conversion, delta)
    if noise is not None and noise * noise_scale > 0:
        out["noise_std"] = noise * noise_scale
        out["instance_mu"] = abs(shift) / out["noise_std"]
        out["exact_instance"] = gaussian_epsilon(out["instance_mu"], delta)
        # The shift is measured on finitely many chains: a point estimate (biased up when the
        # true shift is small), with this normal 95% interval. Never a bound.
        se = measured_std * math.sqrt(1 / len(projection_a) + 1 / len(projection_b)) / out["noise_std"]
        low, high = max(0.0, out["instance_mu"] - 1.96 * se), out["instance_mu"] + 1.96 * se
        out["instance_mu_standard_error"] = se
        out["exact_instance_interval"] = [gaussian_epsilon(low, delta), gaussian_epsilon(high, delta)]
    certificate, converted, instance = certified_epsilon, out["after_conversion"], out["exact_instance"]
    out["lost_to_conversion"] = None if None in (certificate, converted) else certificate - converted
    out["lost_to_unused_drift"] = None if None in (converted, instance) else converted - instance
    return out


def slack_line(s: dict, gaussian: float, bound: float) -> str:
    """certificate -> after conversion -> exact instance -> Gaussian estimate -> lower bound."""
    def number(x):
        return "-" if x is None else f"{x:.2f}"

    return (f"slack: certificate {number(s['certificate'])} -> after conversion {number(s['after_conversion'])} -> "
            f"exact for this instance {number(s['exact_instance'])} -> Gaussian-DP estimate {gaussian:.2f} -> "
            f"lower bound {bound:.2f}")

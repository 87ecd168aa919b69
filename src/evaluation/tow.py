"""Tug of war (Zhao et al., RUM): how close an unlearned model's accuracies are to those of
the model retrained without the forget set,

    ToW     = prod_{S in terms} (1 - |A_S(u) - A_S(rt)|)                 terms: forget, retain, test
    ToW-MIA = (1 - |MIA(u) - MIA(rt)|) (1 - |A_retain gap|) (1 - |A_test gap|)

accuracies and MIA-efficacy as fractions. Both are 1 exactly at retrain and never above 1.
`abs_gap: false` is sharp-unlearn's signed form (forget gap A(u) - A(rt), retain / test gaps
A(rt) - A(u)): forgetting more than retrain, or beating it on test, then pushes ToW above 1.
Over seeds: the mean with a Student-t 95% interval.
"""

from __future__ import annotations

import math

# The sign of each term's gap in sharp-unlearn's signed form: a loss is a positive gap.
SIGNED = {"forget": 1.0, "retain": -1.0, "val": -1.0, "test": -1.0}


def gap(split: str, unlearned: float, reference: float, abs_gap: bool = True) -> float:
    d = unlearned - reference
    return abs(d) if abs_gap else SIGNED[split] * d


def tow(accuracy: dict, reference: dict, terms=("forget", "retain", "test"), abs_gap: bool = True) -> float:
    return math.prod(1 - gap(s, accuracy[s], reference[s], abs_gap) for s in terms)


def tow_mia(accuracy: dict, reference: dict, mia: float, reference_mia: float, abs_gap: bool = True) -> float:
    # Signed: a lower efficacy than retrain (less forgetting) is the positive gap.
    mia_gap = abs(mia - reference_mia) if abs_gap else reference_mia - mia
    return (1 - mia_gap) * tow(accuracy, reference, ("retain", "test"), abs_gap)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float | None]:
    """(mean, half-width of the Student-t interval); half-width None for a single value."""
    from scipy.stats import t

    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))

"""The results of an ensemble's members (`seeds: N`) side by side: per metric the members'
values, their mean, standard deviation and Student-t 95% interval, as summary.json's
`member_stats` holds them. The tables (src/figures/) read each member as a seed and
compute the same interval (evaluation/tow.py's t_interval).
"""

from __future__ import annotations

import math

from src.errors import DivergedError
from src.evaluation.tow import t_interval

# name in member_stats -> where a member's summary holds it
MEMBER_METRICS = {
    "test_accuracy": ("test_accuracy",),
    "forget_accuracy": ("evaluation", "accuracy", "forget"),
    "retain_accuracy": ("evaluation", "accuracy", "retain"),
    "val_accuracy": ("evaluation", "accuracy", "val"),
    "mia_efficacy": ("evaluation", "mia_efficacy"),
    "tow": ("evaluation", "tow", "tow"),
    "tow_val": ("evaluation", "tow", "tow_val"),
    "tow_mia": ("evaluation", "tow", "tow_mia"),
    "certified_epsilon": ("certified_epsilon",),
    "certified_delta": ("certified_delta",),
    "noisy_steps": ("noisy_steps",),
    "unlearn_seconds": ("timings", "unlearn_seconds"),
}


def member_value(member: dict, path: tuple):
    node = member
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def member_statistics(members: list[dict]) -> dict:
    """{metric: {n, mean, std, ci95, low, high}} over the members that have the metric.

    A member whose value is NaN is a failed member: DivergedError names it, nothing is
    averaged over it. An infinite value (an epsilon can be) gives an infinite mean and no
    interval."""
    out = {}
    for name, path in MEMBER_METRICS.items():
        values = []
        for i, member in enumerate(members):
            value = member_value(member, path)
            if value is None:
                continue
            if isinstance(value, float) and math.isnan(value):
                raise DivergedError(f"member {i} of the ensemble has {name} NaN: the member failed, and nothing of "
                                    "this run is recorded as finished")
            values.append(float(value))
        if not values:
            continue
        if not all(math.isfinite(v) for v in values):
            out[name] = {"n": len(values), "mean": math.inf if min(values) > -math.inf else math.nan,
                         "std": None, "ci95": None, "low": None, "high": None}
            continue
        mean, half = t_interval(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        out[name] = {"n": len(values), "mean": mean, "std": std, "ci95": half,
                     "low": None if half is None else mean - half, "high": None if half is None else mean + half}
    return out

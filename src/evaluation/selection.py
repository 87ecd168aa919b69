"""Choosing an empirical method's hyperparameters as SalUn and RUM do: a small grid (usually of
learning rates), every setting run over the same seeds, and the setting with the best mean
ToW on the validation split (`tow_val`: forget, retain and val accuracy against retrain) is
kept. Test accuracy never enters the choice; it is only reported for the chosen setting.

Pure functions over plain records: {"group": ..., "setting": ..., "seed": ..., "score": ...}.
"""

from __future__ import annotations

from collections import defaultdict


def select_settings(records: list[dict], score: str = "tow_val") -> dict:
    """{group: setting with the highest mean `score` over its runs}. Runs without a score
    (no retrain reference) do not count; a group none of whose runs has one is left out.
    Ties go to the setting that sorts first."""
    scores = defaultdict(lambda: defaultdict(list))
    for record in records:
        value = record.get(score)
        if value is not None:
            scores[record["group"]][record["setting"]].append(float(value))
    chosen = {}
    for group, settings in scores.items():
        means = {setting: sum(v) / len(v) for setting, v in settings.items()}
        chosen[group] = max(sorted(means), key=lambda s: means[s])
    return chosen


def setting_means(records: list[dict], score: str = "tow_val") -> dict:
    """{group: {setting: (mean score, number of runs)}}: the whole grid, for the record."""
    scores = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.get(score) is not None:
            scores[record["group"]][record["setting"]].append(float(record[score]))
    return {g: {s: (sum(v) / len(v), len(v)) for s, v in settings.items()} for g, settings in scores.items()}

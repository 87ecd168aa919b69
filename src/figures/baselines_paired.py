"""Which differences in the baselines table are significant.

Per forget set, the methods other than retrain (the reference, ToW 1 by definition) ranked by
mean ToW; each compared with the best-ranked method and with the method ranked just above it,
on the seeds both have (src/evaluation/paired.py: member i of every method of an ensemble
folder shares member i's pretrained model and retrain reference, so the per-seed differences
carry far less noise than two separate intervals suggest). A difference is called significant
when its Holm-adjusted p-value over all the comparisons of that forget set is at most 5%.
"""

from __future__ import annotations

from src.evaluation.paired import holm, paired_difference

METRIC = "tow"
LEVEL = 0.05


def ranking(rows: list, forget_set: str) -> list:
    """The forget set's methods other than retrain, by mean ToW, best first."""
    return sorted((r for r in rows if r.forget_set == forget_set and r.algorithm != "retrain"
                   and r.stats.get(METRIC) is not None), key=lambda r: -r.stats[METRIC][0])


def comparisons(rows: list) -> list[dict]:
    """One entry per (method, reference method) pair, with the Holm-adjusted p-value."""
    out = []
    for forget_set in dict.fromkeys(r.forget_set for r in rows):
        ranked = ranking(rows, forget_set)
        family = []
        for rank, row in enumerate(ranked):
            # the best, and the one just above when that is another method (rank 2's is the best)
            targets = [ranked[0]] if rank else []
            if rank > 1:
                targets.append(ranked[rank - 1])
            for target in targets:
                diff = paired_difference(row.by_seed.get(METRIC, {}), target.by_seed.get(METRIC, {}))
                family.append({"forget_set": forget_set, "rank": rank + 1, "method": row.method, "tow": row.stats[METRIC],
                               "against": target.method, "against_rank": ranked.index(target) + 1, "diff": diff})
        for entry, adjusted in zip(family, holm([e["diff"].p if e["diff"] else None for e in family])):
            entry["p_holm"] = adjusted
            entry["significant"] = adjusted is not None and adjusted <= LEVEL
        out += family
    return out


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def _mean(stat) -> str:
    mean, ci = stat
    return f"{mean:.3f}" + ("" if ci is None else f" ± {ci:.3f}")


def _p(p) -> str:
    return "-" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def paired_markdown(rows: list) -> str:
    entries = comparisons(rows)
    lines = ["## Which differences in ToW are significant", "",
             "Paired over the seeds two methods share (member i of every method starts from the same pretrained "
             "model and is compared with the same retrain member): the mean per-seed difference in ToW with its "
             "Student-t 95% interval, and the two-sided p-value adjusted by Holm's method over all comparisons of "
             f"the forget set; **yes** where the adjusted p-value is at most {LEVEL:g}. Methods ranked by mean ToW "
             "(retrain, the reference, left out); each against the best and against the one ranked just above.", ""]
    for forget_set in dict.fromkeys(r.forget_set for r in rows):
        ranked = ranking(rows, forget_set)
        if not ranked:
            continue
        lines += [f"### Forget set: {forget_set}", "",
                  "| rank | method | ToW | against | ToW difference | pairs | p (Holm) | significant |",
                  "|---|---|---|---|---|---|---|---|"]
        lines.append(f"| 1 | {ranked[0].method} | {_mean(ranked[0].stats[METRIC])} | - | - | - | - | - |")
        for e in (e for e in entries if e["forget_set"] == forget_set):
            d = e["diff"]
            text = "-" if d is None else _signed(d.mean) + ("" if d.ci95 is None else f" ± {d.ci95:.3f}")
            lines.append(f"| {e['rank']} | {e['method']} | {_mean(e['tow'])} | {e['against']} (rank "
                         f"{e['against_rank']}) | {text} | {0 if d is None else d.n} | {_p(e['p_holm'])} | "
                         f"{'**yes**' if e['significant'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def paired_csv_rows(rows: list) -> list[dict]:
    out = []
    for e in comparisons(rows):
        d = e["diff"]
        out.append({"forget_set": e["forget_set"], "rank": e["rank"], "method": e["method"], "against": e["against"],
                    "against_rank": e["against_rank"], "n_pairs": 0 if d is None else d.n,
                    "tow_difference": "" if d is None else f"{d.mean:.6g}",
                    "tow_difference_ci95": "" if d is None or d.ci95 is None else f"{d.ci95:.3g}",
                    "p": "" if d is None or d.p is None else f"{d.p:.3g}",
                    "p_holm": "" if e["p_holm"] is None else f"{e['p_holm']:.3g}",
                    "significant": e["significant"]})
    return out

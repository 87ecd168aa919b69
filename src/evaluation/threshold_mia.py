"""Song & Mittal's (2021) class-conditional threshold attack, as a second membership test
reported with AUC and TPR at low FPR.

For a feature oriented so that larger means "member" (confidence; minus entropy, minus
modified entropy, minus loss), each class c gets the threshold t_c that maximises

    1/2 [ P(member value >= t) + P(non-member value < t) ]

over the shadow values of class c (retain vs test, as the SVC attack; one global threshold
when `class_conditional` is false, or for a class missing from either shadow set). An
example (x, y) is called a member when its value is >= t_y, and s = value - t_y is its score.

Reported on the forget set against the held-out split the shadow did not use:
* efficacy: the fraction of forget examples called non-members (as the SVC's);
* AUC and TPR at each FPR: forget (positives) against held-out non-members (negatives) by s,
  scikit-learn's ROC. 0.5 means the forget set looks like data the model never saw.
"""

from __future__ import annotations

import numpy as np

from src.evaluation.features import confidence, entropy, loss, modified_entropy

ORIENTED = {
    "confidence": confidence,
    "entropy": lambda p, y: -entropy(p),
    "m_entropy": lambda p, y: -modified_entropy(p, y),
    "loss": lambda p, y: -loss(p, y),
}


def best_threshold(member: np.ndarray, nonmember: np.ndarray) -> float:
    """The observed value t maximising (P(member >= t) + P(non-member < t)) / 2 (smallest on ties)."""
    candidates = np.unique(np.concatenate([member, nonmember]))
    members, nonmembers = np.sort(member), np.sort(nonmember)
    member_at_or_above = 1 - np.searchsorted(members, candidates, side="left") / len(members)
    nonmember_below = np.searchsorted(nonmembers, candidates, side="left") / len(nonmembers)
    return float(candidates[np.argmax(member_at_or_above + nonmember_below)])


def class_thresholds(member, member_y, nonmember, nonmember_y, num_classes: int, class_conditional: bool):
    overall = best_threshold(member, nonmember)
    thresholds = np.full(num_classes, overall)
    if class_conditional:
        for c in range(num_classes):
            m, n = member[member_y == c], nonmember[nonmember_y == c]
            if len(m) and len(n):
                thresholds[c] = best_threshold(m, n)
    return thresholds


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_level: float) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_level].max())


def threshold_attack(outputs: dict, cfg, shadow_nonmember: str, members: np.ndarray, nonmembers: np.ndarray) -> dict:
    """{feature: {efficacy, auc, tpr@fpr=...}}; `members` / `nonmembers` index the shadow rows
    of retain and of `shadow_nonmember` (the SVC attack's)."""
    from sklearn.metrics import roc_auc_score

    held_out = "val" if shadow_nonmember == "test" else "test"
    retain_p, retain_y = outputs["retain"]
    shadow_p, shadow_y = outputs[shadow_nonmember]
    forget_p, forget_y = outputs["forget"]
    out_p, out_y = outputs[held_out]
    num_classes = retain_p.shape[1]
    result = {}
    for name in cfg.features:
        value = ORIENTED[name]
        t = class_thresholds(value(retain_p[members], retain_y[members]), retain_y[members],
                             value(shadow_p[nonmembers], shadow_y[nonmembers]), shadow_y[nonmembers],
                             num_classes, cfg.class_conditional)
        forget_score = value(forget_p, forget_y) - t[forget_y]
        out_score = value(out_p, out_y) - t[out_y]
        labels = np.concatenate([np.ones(len(forget_score)), np.zeros(len(out_score))])
        scores = np.concatenate([forget_score, out_score])
        entry = {"efficacy": float((forget_score < 0).mean()), "auc": float(roc_auc_score(labels, scores))}
        for level in cfg.fpr:
            entry[f"tpr@fpr={level:g}"] = tpr_at_fpr(labels, scores, level)
        result[name] = entry
    return result

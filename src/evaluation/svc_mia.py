"""SVC membership inference, the forget-efficacy protocol of SalUn and RUM (their
evaluation/SVC_MIA.py): for each feature, scikit-learn's SVC (C 3, RBF kernel, gamma "auto",
no feature scaling) is fit on shadow members (retain examples, label 1) against shadow
non-members (test examples, label 0), and

    MIA-efficacy = 1 - mean(SVC prediction on the forget set),

the fraction of forget examples it calls non-members: higher is more forgetting. The paper's
"MIA" column is the confidence feature. Shadow members are the first n retain examples in
the paper (`shadow_sampling: first`); by default a seeded random sample, of at most
`n_shadow` (2,000) per class: the paper's 10,000 cost minutes of SVC fits per run.
"""

from __future__ import annotations

import numpy as np

from src.evaluation.features import feature


def shadow_rows(n_available: int, n: int, sampling: str, rng: np.random.Generator) -> np.ndarray:
    n = min(n, n_available)
    return np.arange(n) if sampling == "first" else np.sort(rng.choice(n_available, size=n, replace=False))


def svc_efficacy(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray, C: float = 3.0,
                 kernel: str = "rbf", gamma="auto") -> float:
    """1 - the fraction of `target` rows an SVC fit on member (1) vs non-member (0) rows calls members."""
    from sklearn.svm import SVC  # scikit-learn costs seconds to import; only runs need it

    x = np.concatenate([member, nonmember]).reshape(len(member) + len(nonmember), -1)
    labels = np.concatenate([np.ones(len(member)), np.zeros(len(nonmember))])
    classifier = SVC(C=C, kernel=kernel, gamma=gamma)
    classifier.fit(x, labels)
    return float(1.0 - classifier.predict(target.reshape(len(target), -1)).mean())


def shadow_sets(outputs: dict, cfg, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of retain (shadow members) and of `cfg.shadow_nonmember` (shadow non-members),
    n of each: `cfg.n_shadow`, or as many as the smaller split has."""
    n_retain, n_other = len(outputs["retain"][1]), len(outputs[cfg.shadow_nonmember][1])
    n = min(cfg.n_shadow, n_retain, n_other)
    return shadow_rows(n_retain, n, cfg.shadow_sampling, rng), shadow_rows(n_other, n, cfg.shadow_sampling, rng)


def svc_mia(outputs: dict, cfg, members: np.ndarray, nonmembers: np.ndarray) -> dict:
    """{feature: efficacy} for the config's features (`evaluation.mia.svc`), the shadow sets
    given as rows of retain and of the non-member split."""
    retain_p, retain_y = outputs["retain"]
    other_p, other_y = outputs[cfg.shadow_nonmember]
    forget_p, forget_y = outputs["forget"]
    result = {}
    for name in cfg.features:
        # The legacy m_entropy depends on the labels present in each evaluated set, as upstream.
        legacy = cfg.legacy_m_entropy
        result[name] = svc_efficacy(feature(name, retain_p[members], retain_y[members], legacy),
                                    feature(name, other_p[nonmembers], other_y[nonmembers], legacy),
                                    feature(name, forget_p, forget_y, legacy), cfg.C, cfg.kernel, cfg.gamma)
    return result

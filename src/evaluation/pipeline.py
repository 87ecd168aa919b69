"""The forgetting metrics of one finished run, logged under stable names and returned for
summary.json's `evaluation`:

    eval/{forget,retain,val,test}_accuracy
    eval/forget_{low,mid,high}_accuracy       on a `mix` forget set: each part (its indices in summary.json)
    eval/mia_efficacy                         the SVC efficacy of evaluation.mia.svc.report_feature
    eval/mia_svc/<feature>
    eval/mia_threshold/<feature>/{efficacy,auc,tpr@fpr=<level>}
    eval/tow, eval/tow_val, eval/tow_mia      against the retrain run (null without one)
    eval/gap/{forget,retain,val,test,mia}     unlearned minus retrain

`tow_val` swaps test for val in ToW's terms: what selection uses, never test. All splits are
evaluated without augmentation. A retrain run is its own reference (ToW = 1).
"""

from __future__ import annotations

import numpy as np

from src.evaluation.accuracy import SPLITS, split_accuracies
from src.evaluation.features import softmax_outputs
from src.evaluation.reference import find_reference, forget_set_fingerprint, identity
from src.evaluation.svc_mia import shadow_sets, svc_mia
from src.evaluation.threshold_mia import threshold_attack
from src.evaluation.tow import tow, tow_mia
from src.seeds import derive_seed

REFERENCE_ALGORITHM = "retrain"


# The membership attacks fit an SVC (and per-class thresholds) on shadow sets of
# min(n_shadow, |retain|, |non-member split|) examples a side: below this there is no boundary
# to learn, and what they would report (efficacy, ToW-MIA) means nothing.
MIN_SHADOW = 5


def check_sizes(config, sizes) -> None:
    """Refuse, before anything is written, splits too small for the configured metrics."""
    from src.errors import ConfigError

    mia = config.evaluation.mia
    if not (mia.svc.enabled or mia.threshold.enabled):
        return
    other = getattr(sizes, mia.svc.shadow_nonmember)
    n = min(mia.svc.n_shadow, sizes.retain, other)
    if n < MIN_SHADOW:
        ds = config.dataset
        raise ConfigError(
            f"dataset.forget_split: {ds.forget_split} (val_split {ds.val_split}) leaves {sizes.retain} retain and "
            f"{other} {mia.svc.shadow_nonmember} examples: the membership attacks would be fit on {n} shadow "
            f"example(s) a side, at least {MIN_SHADOW} are needed to fit a member/non-member boundary; choose a "
            "smaller forget_split or turn the attacks off (evaluation.mia.svc.enabled and "
            "evaluation.mia.threshold.enabled: false)")


def evaluate_run(config, data, model, log, console=None) -> dict:
    ev = config.evaluation
    outputs = {split: softmax_outputs(model, getattr(data, split)) for split in SPLITS}
    accuracy = split_accuracies(outputs)
    result = {"identity": identity(config, forget_set_fingerprint(config.dataset.name, data.indices)),
              "accuracy": accuracy, "forget_size": len(data.forget)}
    svc = ev.mia.svc
    # One pair of shadow sets for both attacks (the SVC's keys say how they are drawn).
    members, nonmembers = shadow_sets(outputs, svc, np.random.default_rng(derive_seed(config.global_seed,
                                                                                       "mia-shadow")))
    if svc.enabled:
        result["mia_svc"] = svc_mia(outputs, svc, members, nonmembers)
        result["mia_efficacy"] = result["mia_svc"].get(svc.report_feature)
    if ev.mia.threshold.enabled:
        result["mia_threshold"] = threshold_attack(outputs, ev.mia.threshold, svc.shadow_nonmember, members,
                                                   nonmembers)
    if ev.tow.enabled:
        result["tow"] = tug_of_war(config, result)
    groups = mix_groups_of(config, data, outputs["forget"])
    if groups is not None:
        result["forget_groups"] = groups
    log(flat_row(result))
    if console is not None:
        tow_value = (result.get("tow") or {}).get("tow")
        console.line("forgetting: accuracy " + "  ".join(f"{s} {accuracy[s]:.4f}" for s in SPLITS)
                     + (f"  MIA-efficacy {result['mia_efficacy']:.4f}" if result.get("mia_efficacy") is not None
                        else "")
                     + (f"  ToW {tow_value:.4f}" if tow_value is not None else "  ToW: no retrain run of this forget "
                        f"set in {config.logs_dir} yet"))
    return result


def tug_of_war(config, result: dict) -> dict:
    cfg = config.evaluation.tow
    me = result["identity"]
    if config.unlearning.algorithm == REFERENCE_ALGORITHM:
        reference, reference_id = result, None  # retrain is its own reference
    else:
        summary = find_reference(config.logs_dir, me, REFERENCE_ALGORITHM)
        if summary is None:
            return {"tow": None, "tow_val": None, "tow_mia": None, "reference_run": None}
        reference, reference_id = summary["evaluation"], summary.get("run_id")
    return tow_against(result, reference, cfg, reference_id)


def tow_against(result: dict, reference: dict, cfg, reference_id=None) -> dict:
    """ToW, ToW on val, ToW-MIA and the gaps of one evaluation against a reference evaluation."""
    a, r = result["accuracy"], reference["accuracy"]
    val_terms = tuple("val" if t == "test" else t for t in cfg.terms)
    out = {"tow": tow(a, r, cfg.terms, cfg.abs_gap), "tow_val": tow(a, r, val_terms, cfg.abs_gap),
           "gap": {s: a[s] - r[s] for s in SPLITS}, "reference_run": reference_id}
    mia, ref_mia = (result.get("mia_svc") or {}).get(cfg.mia_feature), (reference.get("mia_svc") or {}).get(cfg.mia_feature)
    if mia is not None and ref_mia is not None:
        out["tow_mia"] = tow_mia(a, r, mia, ref_mia, cfg.abs_gap)
        out["gap"]["mia"] = mia - ref_mia
    else:
        out["tow_mia"] = None
    return out


def mix_groups_of(config, data, forget_outputs) -> dict | None:
    """On a `mix` forget set: each part's accuracy and (research mode) its indices in the
    official train split's numbering; release mode (secure_rng) keeps only the sizes."""
    from src.data.forget_groups import mix_forget_groups

    groups = mix_forget_groups(config, data, data.forget.y.device)
    if groups is None:
        return None
    p, y = forget_outputs
    official = data.indices.forget.cpu().numpy()
    return {"accuracy": {g: float((p[pos].argmax(1) == y[pos]).mean()) for g, pos in groups.items()},
            "indices": {g: (len(pos) if config.secure_rng else official[pos].tolist()) for g, pos in groups.items()}}


def flat_row(result: dict) -> dict:
    row = {f"eval/{s}_accuracy": v for s, v in result["accuracy"].items()}
    parts = (result.get("forget_groups") or {}).get("accuracy", {})
    row.update({f"eval/forget_{g}_accuracy": a for g, a in parts.items()})
    if "mia_svc" in result:
        row["eval/mia_efficacy"] = result["mia_efficacy"]
        row.update({f"eval/mia_svc/{k}": v for k, v in result["mia_svc"].items()})
    for name, entry in (result.get("mia_threshold") or {}).items():
        row.update({f"eval/mia_threshold/{name}/{k}": v for k, v in entry.items()})
    t = result.get("tow")
    if t is not None:
        row.update({"eval/tow": t["tow"], "eval/tow_val": t["tow_val"], "eval/tow_mia": t["tow_mia"]})
        row.update({f"eval/gap/{k}": v for k, v in (t.get("gap") or {}).items()})
    return row

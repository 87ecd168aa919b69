"""The loop of a RUM run (src/unlearning/rum.py plans it): each group one pass of the request
stream's machinery, from the model the previous step produced. It lives beside the stream
(a layer above the unlearning methods) because it shares the stream's view of the data and
because cutting the groups computes the memorization proxies (src/evaluation/).

Before the first step the groups are cut (forget_groups) and each group's indices, in the
official train split's numbering, are logged (in release mode, secure_rng, only their
sizes). Step k reads retain = D minus groups 1..k (the request stream's view,
src/request_stream/run.py `request_data`) and forget = group k, with the random streams
of request k; a `nothing` step touches nothing. After every step one record is logged with
the accuracy on the whole forget set and on each group, the entanglement of the whole
forget set with the retain set (global and class-wise, src/evaluation/entanglement.py), on
the original retain set (D \\ F), val and test, and ToW against the retrain run of the same forget set when
logs_dir holds one; the forgetting metrics of the whole forget set at the end are the
runner's, as for any run.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from src.certificates import certificate_row, certificate_scope
from src.data.base_datamodule import Split
from src.data.forget_groups import PROXIES, WHOLE, forget_in_train, mix_groups, ranked_groups, shuffled_groups
from src.evaluation.entanglement import entanglement_report
from src.evaluation.pipeline import REFERENCE_ALGORITHM
from src.evaluation.reference import find_reference, forget_set_fingerprint, identity
from src.evaluation.tow import tow
from src.request_stream.run import request_data, seed_tag
from src.request_stream.schedule import RequestSchedule
from src.tracking import fmt, fmt_up
from src.training.evaluate import Evaluator
from src.training.trainer import Trainer


class StepLogger:
    """The run's logger, with the step and its group added to every row."""

    def __init__(self, logger, step: int, group: str):
        self.logger, self.step, self.group = logger, step, group

    def log(self, row: dict) -> None:
        self.logger.log({**row, "rum_step": self.step, "rum_group": self.group})

    def flush(self) -> None:
        self.logger.flush()


def run_rum(rum_plan, data, model, logger, console, device, pretrained_meta, run_dir, attach_run) -> dict:
    config = rum_plan.config
    groups = forget_groups(config, data, device, model)
    names = list(groups)
    official = data.indices.forget.cpu().numpy()
    # Release mode: which examples the scores put in which group says something about the
    # data and the models before any certificate, so only the groups' sizes are written.
    logged_groups = {g: (len(groups[g]) if config.secure_rng else official[groups[g]].tolist()) for g in names}
    logger.log({"rum_groups": logged_groups, "rum_group_by": config.unlearning.rum.group_by,
                "rum_shuffle": config.unlearning.rum.shuffle})
    schedule = RequestSchedule(tuple(groups[g] for g in names), len(data.forget), f"RUM groups {names}")
    console.line(f"RUM: {rum_plan.statement}")
    control = "; shuffled control" if config.unlearning.rum.shuffle else ""
    console.line(f"RUM groups ({config.unlearning.rum.group_by}{control}): "
                 + ", ".join(f"{g} {len(groups[g])}" for g in names))
    reference = _reference_accuracy(config, data)
    evaluate = Evaluator(model)
    group_splits = {g: Split(data.forget.x[torch.as_tensor(groups[g])], data.forget.y[torch.as_tensor(groups[g])])
                    for g in names}
    records, seconds, noisy_steps, test = [], 0.0, 0, None
    for step in rum_plan.steps:
        k, g = step.index, step.group
        view = step_view(data, schedule, k)
        console.line(f"RUM step {k}/{len(rum_plan.steps)}: {step.algorithm} on the {g} group ({step.sizes.forget} "
                     f"examples), retain set of {step.sizes.retain}")
        record = {"rum_step": k, "rum_group": g, "algorithm": step.algorithm, "group_size": step.sizes.forget,
                  "retain_size": step.sizes.retain}
        start = time.perf_counter()
        if step.plan is not None:
            algorithm = attach_run(step.plan, device, pretrained_meta, seed_tag(k), data=view)
            trainer = Trainer(step.plan.config, view, model, algorithm, StepLogger(logger, k, g), console, seed_tag(k))
            trainer.unlearn()
            test = trainer.test()
            noisy_steps += trainer.noisy_steps
            record.update({"epochs": step.plan.config.unlearning.epochs,
                           "steps": step.plan.config.unlearning.epochs * trainer.steps_per_epoch,
                           "noisy_steps": trainer.noisy_steps,
                           **{key: trainer.certificate[key] for key in
                              ("certified_epsilon", "certified_delta", "certificate_valid")}})
            if step.all_models is not None:
                record.update(step.all_models.as_dict())
        step_seconds = time.perf_counter() - start
        seconds += step_seconds
        accuracy = {"forget": evaluate(data.forget)[1], "retain": evaluate(data.retain)[1],
                    "val": evaluate(data.val)[1], "test": evaluate(data.test)[1]}
        record.update({"seconds": step_seconds, **{f"{s}_accuracy": a for s, a in accuracy.items()},
                       **entanglement_report(model, data.retain, data.forget),
                       **{f"forget_{h}_accuracy": evaluate(group_splits[h])[1] for h in names},
                       "tow": tow(accuracy, reference) if reference else None})
        logger.log(record)
        records.append(record)
        console.line(f"RUM step {k} done: forget acc {fmt(accuracy['forget'])} ("
                     + ", ".join(f"{h} {fmt(record[f'forget_{h}_accuracy'])}" for h in names)
                     + f"), test acc {fmt(accuracy['test'])}"
                     + (f", ToW {fmt(record['tow'])}" if record["tow"] is not None else ""))
    if test is None:  # every step was `nothing`: the released model is the pretrained one
        loss, acc = evaluate(data.test)
        logger.log({"Test_loss": loss, "Test_accuracy": acc})
        test = {"test_accuracy": acc, "test_loss": loss}
    certificate = {**certificate_row(rum_plan.privacy), **certificate_scope(config)}
    if rum_plan.uncertified_because:
        console.line("WARNING: this RUM run is uncertified: " + "; ".join(rum_plan.uncertified_because))
    else:
        console.line(f"RUM certificate (whole forget set): released model epsilon "
                     f"{fmt_up(certificate['certified_epsilon'])} delta {fmt_up(certificate['certified_delta'])}; "
                     f"every step's model together epsilon {fmt_up(rum_plan.privacy.details['all_models_epsilon'])} "
                     f"delta {fmt_up(rum_plan.privacy.details['all_models_delta'])}")
    return {"rum": {"groups": logged_groups, "steps": records}, "certificate": certificate,
            "noisy_steps": noisy_steps, "timings": {"unlearn_seconds": seconds}, **test}


def step_view(data, schedule: RequestSchedule, k: int):
    """What step k reads: retain = D minus groups 1..k (the request stream's view), forget =
    group k alone (the reference's forget set of the step; a mask or an ascent reads it)."""
    view = request_data(data, schedule, k)
    group = torch.as_tensor(schedule.positions(k), device=data.forget.y.device)
    return replace(view, forget=Split(data.forget.x[group], data.forget.y[group]),
                   indices=replace(view.indices, forget=data.indices.forget[group.cpu()]))


def _reference_accuracy(config, data) -> dict | None:
    """The retrain run's accuracies on this forget set (for ToW after each step), if logged."""
    me = identity(config, forget_set_fingerprint(config.dataset.name, data.indices))
    summary = find_reference(config.logs_dir, me, REFERENCE_ALGORITHM)
    return None if summary is None else summary["evaluation"]["accuracy"]


def group_scores(config, data, device, model=None) -> np.ndarray:
    """Scores of the train split (in its order) for `unlearning.rum.group_by`, high = more
    memorized: the true memorization score, or a proxy of the model RUM starts from."""
    by = config.unlearning.rum.group_by
    if by in PROXIES:
        from src.evaluation.proxies import proxy_scores

        return proxy_scores(by, config, data, model)
    from src.data.datamodule import dataset_family
    from src.data.forget_sets import memorization_scores

    raw = dataset_family(config).load(config, device)
    return memorization_scores(config, raw, data.indices.train, device)


def forget_groups(config, data, device, model=None) -> dict[str, np.ndarray]:
    """Forget-split positions of each group, in `order`; `model` is the model RUM starts from
    (for the proxies computed from it and for entanglement)."""
    rum = config.unlearning.rum
    n = len(data.forget)
    if list(rum.order) == [WHOLE]:
        return {WHOLE: np.arange(n)}
    fs = config.dataset.forget
    if rum.group_by == "entanglement":
        from src.evaluation.entanglement import example_distances, penultimate_embeddings

        retain, forget = penultimate_embeddings(model, data.retain), penultimate_embeddings(model, data.forget)
        groups = ranked_groups(example_distances(retain, data.retain.y.cpu().numpy(), forget,
                                                 data.forget.y.cpu().numpy()))
    else:
        positions = forget_in_train(data.indices)
        scores = group_scores(config, data, device, model)
        if rum.group_by == "memorization" and fs.strategy == "memorization" and fs.memorization.group == "mix":
            groups = mix_groups(scores, positions, fs.memorization.mid_rule)
        else:
            groups = ranked_groups(scores[positions])
    if rum.shuffle:
        from src.seeds import derive_seed

        groups = shuffled_groups(groups, derive_seed(config.dataset.seed, "rum-shuffled-groups"))
    return {g: groups[g] for g in rum.order}

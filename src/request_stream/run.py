"""The loop over deletion requests: each request one pass through the trainer's phases.

Request r starts from the model request r-1 deployed (the pretrained model for r = 1),
on a view of the data in which the retain split is D_r (the original retain split plus
the forget examples not deleted yet) and the forget split is everything deleted so far:
the trainer reads nothing else, so no deleted example is touched after its request.
Each pass draws its own noise, data order and evaluation augmentation (seed tag
"/request-<r>"; request 1 uses the single run's streams, so a stream of one request is
the single run bit for bit). After each request the deployed model is saved and one
record is logged: sizes, compute, accuracies and both certificates (docs/requests.md).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from src.data.base_datamodule import DataModule, Split, SplitIndices
from src.request_stream.plan import StreamPlan
from src.request_stream.schedule import RequestSchedule
from src.tracking import TaggedLogger, fmt, fmt_up  # noqa: F401  (fmt_up: the stream and RUM print bounds with it)
from src.training.checkpoints import save_checkpoint
from src.training.evaluate import Evaluator
from src.training.trainer import Trainer


def seed_tag(r: int) -> str:
    """Request 1 draws from the single run's random streams; request r from its own."""
    return "" if r == 1 else f"/request-{r}"


def deployed_model_path(run_dir, r: int):
    return run_dir / "deployed" / f"request_{r}.pt"


def request_data(data: DataModule, schedule: RequestSchedule, r: int) -> DataModule:
    """The data request r may see: retain = D_r (original retain split, then the forget
    examples still present, in forget-split order); forget = everything deleted by
    requests 1..r (for evaluation only). `train` stays the original split (unused by the
    unlearning phases); `indices` follow the views, in the official train split's numbering."""
    deleted, remaining = schedule.deleted_through(r), schedule.remaining_after(r)
    forget, retain = data.forget, data.retain
    index = data.indices
    if len(remaining):
        keep = torch.as_tensor(remaining, device=forget.y.device)
        retain = Split(torch.cat([retain.x, forget.x[keep]]), torch.cat([retain.y, forget.y[keep]]))
    if len(deleted) < len(forget):
        gone = torch.as_tensor(deleted, device=forget.y.device)
        forget = Split(forget.x[gone], forget.y[gone])
    indices = SplitIndices(train=index.train, val=index.val,
                           retain=torch.cat([index.retain, index.forget[torch.as_tensor(remaining)]]),
                           forget=index.forget[torch.as_tensor(deleted)])
    return replace(data, retain=retain, forget=forget, indices=indices)


def run_requests(stream: StreamPlan, data: DataModule, model, logger, console, device, pretrained_meta, run_dir,
                 attach_run) -> dict:
    """Process every request of `stream` in order; returns the summary's additions.

    `attach_run(plan, device, meta, seed_tag, data=view)` gives a planned pass its noise and data (the runner's)."""
    records = []
    steps = epochs = 0
    seconds = 0.0
    k = len(stream.requests)
    for request in stream.requests:
        r, plan = request.index, request.plan
        view = request_data(data, stream.schedule, r)
        console.line(f"request {r}/{k}: deleting {request.sizes.forget} examples ({request.deleted} deleted so far), "
                     f"{request.sizes.retain} remain")
        algorithm = attach_run(plan, device, pretrained_meta, seed_tag(r), data=view)
        trainer = Trainer(plan.config, view, model, algorithm, TaggedLogger(logger, request=r), console, seed_tag(r))
        start = time.perf_counter()
        trainer.unlearn()
        request_seconds = time.perf_counter() - start
        test = trainer.test()  # logs the request's Test row, as a single run does
        budget_epochs = plan.config.unlearning.epochs
        request_steps = budget_epochs * trainer.steps_per_epoch
        steps, epochs, seconds = steps + request_steps, epochs + budget_epochs, seconds + request_seconds
        evaluate = Evaluator(model)
        certificate = trainer.certificate
        record = {
            "request": r, "request_size": request.sizes.forget, "deleted_so_far": request.deleted,
            "retain_size": request.sizes.retain, "epochs": budget_epochs, "steps": request_steps,
            "noisy_steps": trainer.noisy_steps, "seconds": request_seconds,
            "cumulative_epochs": epochs, "cumulative_steps": steps, "cumulative_seconds": seconds,
            "test_accuracy": evaluate(view.test)[1], "val_accuracy": evaluate(view.val)[1],
            "forget_so_far_accuracy": evaluate(view.forget)[1], "retain_accuracy": evaluate(view.retain)[1],
            "certified_epsilon": certificate["certified_epsilon"], "certified_delta": certificate["certified_delta"],
            "certificate_valid": certificate["certificate_valid"], **request.all_models.as_dict(),
        }
        logger.log(record)
        records.append(record)
        save_checkpoint(deployed_model_path(run_dir, r), model.state_dict(),
                        {"request": r, "deleted_so_far": request.deleted})
        all_models = request.all_models
        console.line(f"request {r}/{k} done: test acc {fmt(record['test_accuracy'])}, {request_steps} steps "
                     f"({steps} in all); certificate epsilon {fmt_up(record['certified_epsilon'])} delta "
                     f"{fmt_up(record['certified_delta'])}; every deployed model so far: epsilon "
                     f"{fmt_up(all_models.epsilon)} delta {fmt_up(all_models.delta)} ({all_models.rule})")
    return {"requests": records, "certificate": trainer.certificate,
            "all_models_certificate": stream.requests[-1].all_models.as_dict(),
            "noisy_steps": sum(x["noisy_steps"] for x in records), "timings": {"unlearn_seconds": seconds},
            **test}  # the last request's test metrics: the released model's

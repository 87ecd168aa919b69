"""Request k of a finished stream, handed to the empirical audit (src/audit/, issue #14).

Request k's certificate compares two runs of the same pass on D_k (the data left after
requests 1..k): one started from the model the stream deployed before request k
(M_{k-1}; the pretrained model for k = 1), the other from a model trained with the same
recipe on D_k alone, which never saw an example deleted so far (docs/requests.md). An
audit runs request k's pass from both starting points many times; the lower bound on
epsilon it finds must never exceed request k's certificate (`start.plan.privacy`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from src.config import ExperimentConfig, load_config
from src.data.base_datamodule import DataModule
from src.data.datamodule import get_datamodule
from src.errors import UserError
from src.request_stream.plan import RequestPlan
from src.request_stream.run import deployed_model_path, request_data
from src.runner import load_pretrained, make_plan
from src.training.checkpoints import checkpoint_name, load_checkpoint
from src.training.trainer import Console, build_model, pretrain


@dataclass
class RequestStart:
    index: int  # k, 1-based
    config: ExperimentConfig  # the config of request k's pass (its per-request budget)
    plan: object  # the runner's Plan of request k's pass: algorithm and certificate
    request: RequestPlan  # sizes and the certificate composed over requests 1..k
    data: DataModule  # request k's view: retain = D_k, forget = everything deleted through k
    deployed: torch.Tensor  # theta of M_{k-1}, where the stream started request k
    retrained: torch.Tensor | None  # theta of the same training recipe on D_k alone (None: not asked for)


def finished_stream_config(run_dir) -> ExperimentConfig:
    """The config of the finished stream logged in `run_dir`; a clear error for anything else."""
    run_dir = Path(run_dir)
    config_path, summary_path = run_dir / "config.yaml", run_dir / "summary.json"
    if not summary_path.is_file() or not config_path.is_file():
        raise UserError(f"{run_dir}: not a finished run (config.yaml and summary.json are needed)")
    try:
        finished = json.loads(summary_path.read_text()).get("finished") is True
    except (ValueError, AttributeError):
        finished = False
    if not finished:
        raise UserError(f"{summary_path}: not the summary of a finished run (no \"finished\": true)")
    config = load_config(config_path)  # the repository's reader (YAML 1.2, clear errors)
    if config.requests is None:
        raise UserError(f"{run_dir}: not a stream of deletion requests (its config has no requests: section)")
    return config


def request_starting_points(run_dir, k: int, device="cpu", console=None, retrained: bool = True) -> RequestStart:
    """The two starting points and the config of request k of the stream logged in `run_dir`.
    With `retrained=False` world B's model is not trained (an adversarial start never uses it)."""
    run_dir = Path(run_dir)
    console = console or Console(quiet=True)
    config = finished_stream_config(run_dir)
    data = get_datamodule(config, device)
    plan = make_plan(config, data.sizes, data.forget.y)
    if not 1 <= k <= len(plan.stream.requests):
        raise UserError(f"request {k}: the stream in {run_dir} has requests 1 to {len(plan.stream.requests)}")
    request = plan.stream.requests[k - 1]
    view = request_data(data, plan.stream.schedule, k)

    model = build_model(config, data.input_shape, device)
    if k > 1:
        path = deployed_model_path(run_dir, k - 1)
        model.load_state_dict(load_checkpoint(path)[0], source=str(path))
    elif config.training.pretrained is False:  # pretrained inside the run
        path = run_dir / "ckpt" / checkpoint_name(config.training.epochs)
        model.load_state_dict(load_checkpoint(path)[0], source=str(path))
    else:
        load_pretrained(config, model, device, console, data)
    deployed = model.theta.detach().clone()

    if not retrained:
        return RequestStart(k, request.config, request.plan, request, view, deployed, None)
    fresh = build_model(config, data.input_shape, device)
    pretrain(config, replace(view, train=view.retain), fresh, lambda row: None, console)
    return RequestStart(k, request.config, request.plan, request, view, deployed, fresh.theta.detach().clone())

"""The audit of request k of a finished stream of deletion requests (docs/requests.md).

Request k's certificate compares two runs of its pass on D_k (the data left after requests
1..k): one started from the model the stream deployed before request k (M_{k-1}; the
pretrained model for k = 1), the other from the same training recipe on D_k alone, which
never saw an example deleted so far. World A starts from the first, world B from the
second (`--start adversarial`: two points 2 C0 apart on the ball, along M_{k-1}), and both
run request k's noisy phase, planned for request k's own sizes.

The certificate compared is request k's own (epsilon_k, delta_k): what the model deployed
after request k reveals against that reference (reading (a) of docs/requests.md). The
composition over every deployed model (reading (b)) is larger and bounds k models seen
together, which an audit of one request's output does not test; audit.json carries it
for reference only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from src.audit.audit import audit, check_auditable, check_chains_fit
from src.audit.report import code_commit, write_audit
from src.audit.stream_request import finished_stream_config, request_starting_points
from src.audit.worlds import adversarial_starts
from src.errors import UserError
from src.preflight import check_output_dir
from src.request_stream.run import deployed_model_path
from src.runner import make_plan, resolve_device

CERTIFICATE = ("per request: request k's own (epsilon, delta), for the model deployed after it against the same "
               "pass started from a model that never saw any example deleted so far (docs/requests.md, reading (a)); "
               "not the composition over every deployed model")


def logged_requests(run_dir: Path) -> list:
    """The per-request records of the run's summary.json."""
    records = json.loads((run_dir / "summary.json").read_text()).get("requests")
    return records if isinstance(records, list) else []


def check_same_certificate(run_dir: Path, k: int, privacy, pass_config, sizes) -> None:
    """The audit compares the certificate the stream logged for request k, and plans the
    pass it runs for the same sizes; all three must agree about what was certified."""
    records = logged_requests(run_dir)
    record = records[k - 1] if 0 <= k - 1 < len(records) else None
    if not isinstance(record, dict):
        raise UserError(f"{run_dir / 'summary.json'}: no record of request {k} (a stream's summary lists every "
                        "request)")
    audited = make_plan(pass_config, sizes).privacy
    if (audited.certified_epsilon, audited.certified_delta) != (privacy.certified_epsilon, privacy.certified_delta):
        raise UserError(f"request {k}: its pass planned on its own is certified at "
                        f"{(audited.certified_epsilon, audited.certified_delta)}, not at the stream's "
                        f"{(privacy.certified_epsilon, privacy.certified_delta)}; the audit would not test request "
                        f"{k}'s certificate")
    logged = (record.get("certified_epsilon"), record.get("certified_delta"))
    planned = (privacy.certified_epsilon, privacy.certified_delta)
    if logged != planned:
        raise UserError(f"{run_dir / 'summary.json'}: request {k} logged the certificate (epsilon, delta) = {logged}, "
                        f"but its config is certified at {planned} now (a run of another version of the code?); "
                        "run the stream again to audit it")


def audit_request(run_dir, k: int, args, console, name_suffix: str = ""):
    """Audit request k of the stream logged in `run_dir`; returns (result, audit.json path)."""
    run_dir = Path(run_dir)
    config = finished_stream_config(run_dir)
    check_auditable(config)  # before anything is trained
    device = resolve_device(args.device or config.device)
    num_requests = len(logged_requests(run_dir))
    if not 1 <= k <= num_requests:  # before anything is trained
        raise UserError(f"request {k}: the stream in {run_dir} has requests 1 to {num_requests}")
    # Also before world B's start is trained: the chains must fit, the results folder be writable.
    check_chains_fit(args.chains, make_plan(config).num_parameters)
    check_output_dir(Path(args.out) / f"{run_dir.resolve().name}-request-{k}{name_suffix}", "--out")
    clock = time.perf_counter()
    adversarial = args.start == "adversarial"  # world B's start is then never used: not trained
    console.line(f"request {k}: loading M_{k - 1}" + ("" if adversarial else
                                                      f" and training world B's start (the recipe on D_{k} alone)"))
    start = request_starting_points(run_dir, k, device, console, retrained=not adversarial)
    privacy = start.plan.privacy
    # Request k's pass as a single run: its config without the stream, planned for its sizes.
    pass_config = start.config.model_copy(update={"requests": None})
    check_same_certificate(run_dir, k, privacy, pass_config, start.request.sizes)
    retain = len(start.data.retain)
    if adversarial:
        start_a, start_b, starts = adversarial_starts(pass_config, start.deployed)
        starts["direction_from"] = f"M_{k - 1}, deployed before request {k}"
    else:
        start_a, start_b = start.deployed, start.retrained
        deployed = deployed_model_path(run_dir, k - 1) if k > 1 else "the pretrained model (request 1 starts from it)"
        starts = {"world_A": f"M_{k - 1}, deployed before request {k}: {deployed}",
                  "world_B": f"the training recipe on D_{k} alone ({retain} examples), trained for this audit"}
    starting_seconds = time.perf_counter() - clock
    audit_id = f"{run_dir.resolve().name}-request-{k}{name_suffix}"
    describe = {"audit_id": audit_id, "stream_run": str(run_dir), "config_file": str(run_dir / "config.yaml"),
                "overrides": [], "commit": code_commit(),
                "request": k, "num_requests": num_requests, "certificate": CERTIFICATE,
                "retain_size": retain, "deleted_so_far": start.request.deleted,
                "all_models_through_request": start.request.all_models.as_dict(),
                "start": args.start, "starts": starts}
    result = audit(pass_config, start_a, start_b, args.chains, data=start.data, device=device,
                   confidence=args.confidence, noise_scale=args.noise_scale, seed=args.seed, describe=describe,
                   console=console, sizes=start.request.sizes,
                   label=f"request {k} of {num_requests}, per-request certificate")
    result.seconds["starting_points"] = round(starting_seconds, 3)
    path = write_audit(result, Path(args.out) / audit_id)
    return result, path

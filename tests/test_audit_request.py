"""The empirical audit of request k of a finished stream of deletion requests
(python -m src.audit --stream-run DIR --request K, src/audit/request.py), on the bundled
MNIST digits: its lower bound stays below that request's own certificate with the stream's
noise, rises above it with the noise weakened, and bad input is a one-line error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from src.audit.__main__ import main as audit_main
from src.config import load_config
from src.runner import resolve_device, run
from src.training.trainer import Console
from tests.conftest import QUICKSTART

K = 2  # the request audited: it starts from the model request 1 deployed


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory, session_checkpoints) -> tuple[Path, dict]:
    """A finished stream: Gradient Clipping certified at epsilon 1, 3 requests, tiny budgets."""
    logs = tmp_path_factory.mktemp("stream-logs")
    config = load_config(QUICKSTART, ["requests.num_requests=3", f"logs_dir={logs}",
                                      f"checkpoints_dir={session_checkpoints}", "training.epochs=3",
                                      "unlearning.epochs=2", "name=audited-stream"])
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    return logs / summary["run_id"], summary


def audit_request(capsys, run_dir, out, *args):
    code = audit_main(["--stream-run", str(run_dir), "--out", str(out), "--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def down(x: float) -> str:
    return f"{math.floor(x * 1000) / 1000:.3f}"  # a lower bound is printed rounded down


def test_the_audit_of_request_k_stays_below_its_certificate_and_exceeds_it_with_weakened_noise(
        stream_run, tmp_path, capsys):
    run_dir, summary = stream_run
    logged = summary["requests"][K - 1]
    assert logged["certified_epsilon"] == pytest.approx(1.0) and logged["noisy_steps"] > 0

    code, lines, err = audit_request(capsys, run_dir, tmp_path / "real", "--request", K, "--chains", 128)
    assert code == 0 and "EXCEEDED" not in err
    directory = tmp_path / "real" / f"{run_dir.name}-request-{K}-n128-conf0.95"
    assert (directory / "audit.png").stat().st_size > 10_000
    real = json.loads((directory / "audit.json").read_text())
    # The certificate compared is request K's own, as the stream logged it, and the
    # audit says so; the composition over every deployed model is only carried along.
    assert real["request"] == K and real["num_requests"] == 3
    assert (real["certified_epsilon"], real["certified_delta"]) == (logged["certified_epsilon"],
                                                                    logged["certified_delta"])
    assert real["certificate"].startswith("per request") and "not the composition" in real["certificate"]
    assert real["all_models_through_request"]["all_models_epsilon"] == logged["all_models_epsilon"] > 1.0
    # the two worlds: the model deployed before request K against the recipe on D_K alone
    assert f"deployed/request_{K - 1}.pt" in real["starts"]["world_A"]
    assert real["retain_size"] == logged["retain_size"] and str(logged["retain_size"]) in real["starts"]["world_B"]
    assert real["noisy_steps"] == logged["noisy_steps"] and real["chains_per_world"] == 128
    # the result: below request K's certificate
    assert 0.0 <= real["lower_bound"] <= real["certified_epsilon"] and not real["exceeds_certificate"]
    assert real["ceiling"] > real["certified_epsilon"]  # 128 chains could have shown more than 1
    assert lines == [f"request {K} of 3, per-request certificate: certified epsilon 1.000, empirical lower bound "
                     f"{down(real['lower_bound'])} (95%), ceiling {down(real['ceiling'])}; Gaussian-DP estimate "
                     f"{real['gaussian_estimate']['epsilon']:.3f} (assumes Gaussian scores)"]

    # The same request with every sigma multiplied by 0.01: the bound rises above the
    # certificate (the audit of a request can fail), without being called a certificate bug.
    code, lines, err = audit_request(capsys, run_dir, tmp_path / "weak", "--request", K, "--chains", 128,
                                     "--noise-scale", 0.01)
    assert code == 0 and "EXCEEDED" not in err
    weak = json.loads((tmp_path / "weak" / f"{run_dir.name}-request-{K}-n128-conf0.95-noise0.01" / "audit.json").read_text())
    assert weak["noise_scale"] == 0.01 and weak["certified_epsilon"] == real["certified_epsilon"]
    assert weak["lower_bound"] > weak["certified_epsilon"] and weak["exceeds_certificate"]
    assert weak["lower_bound"] <= weak["ceiling"]


def fake_run(directory: Path, config: dict, summary: dict) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_bad_stream_runs_and_requests_are_one_line_errors(stream_run, tmp_path, capsys):
    run_dir, summary = stream_run
    stream_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    single = {k: v for k, v in stream_config.items() if k != "requests"}
    dp_sgd = {**stream_config, "unlearning": {**stream_config["unlearning"], "algorithm": "dp-sgd",
                                              "iteration": None},
              "training": {**stream_config["training"],
                           "dp_sgd": {"l2_norm_clip": 1.0, "target_epsilon": 1.0, "target_delta": 1e-5}}}
    cases = [
        ([str(tmp_path / "missing"), "--request", "1"], "not a finished run"),
        ([str(fake_run(tmp_path / "unfinished", stream_config, {"requests": summary["requests"]})), "--request", "1"],
         "not the summary of a finished run"),
        ([str(fake_run(tmp_path / "single", single, {"finished": True})), "--request", "1"],
         "not a stream of deletion requests"),
        ([str(fake_run(tmp_path / "dpsgd", dp_sgd, {"finished": True, "requests": [{}]})), "--request", "1"],
         "'dp-sgd' cannot be audited"),
        ([str(run_dir), "--request", "4"], "request 4: the stream in"),
        ([str(run_dir), "--request", "0"], "has requests 1 to 3"),
        ([str(run_dir)], "add --request K"),
        ([str(run_dir), "--request", "1", "--override", "unlearning.epochs=5"], "--override unlearning.epochs=5"),
    ]
    for args, message in cases:
        code = audit_main(["--stream-run", *args, "--out", str(tmp_path / "out"), "--chains", "12", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code = audit_main(["--config", str(QUICKSTART), "--request", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--request 2: only with --stream-run" in err
    assert not (tmp_path / "out").exists()  # nothing is written for a refused audit


def test_request_1_starts_from_the_pretrained_model(stream_run, tmp_path, capsys, monkeypatch):
    """Request 1's world A is the model the stream started from (the pretrained one)."""
    import src.audit.request as request_audit

    run_dir, summary = stream_run
    seen = {}

    def record(config, start_a, start_b, chains, **kwargs):
        seen.update(a=start_a, b=start_b, sizes=kwargs["sizes"], label=kwargs["label"])
        raise KeyboardInterrupt  # stop before any chain runs

    monkeypatch.setattr(request_audit, "audit", record)
    code = audit_main(["--stream-run", str(run_dir), "--request", "1", "--out", str(tmp_path), "--quiet"])
    capsys.readouterr()
    assert code == 130
    config = load_config(run_dir / "config.yaml")
    from src.runner import make_plan

    pretrained = torch.load(make_plan(config).pretrained_description()["pretrained_path"],
                            weights_only=True)["state_dict"]
    assert torch.equal(seen["a"], torch.cat([t.reshape(-1) for t in pretrained.values()]))
    assert not torch.equal(seen["a"], seen["b"])
    first = summary["requests"][0]
    assert (seen["sizes"].forget, seen["sizes"].retain) == (first["request_size"], first["retain_size"])
    assert seen["label"].startswith("request 1 of 3")


def test_chains_beyond_memory_are_refused_before_world_b_is_trained(stream_run, tmp_path, capsys, monkeypatch):
    """Issue 26: the request audit trains world B's start first; a chain count that cannot be
    held is refused before that (and --out checked), not after."""
    import src.audit.request as request_module

    run_dir, _ = stream_run
    trained = []
    monkeypatch.setattr(request_module, "request_starting_points", lambda *a, **k: trained.append(1))
    code, _, err = audit_request(capsys, run_dir, tmp_path / "out", "--request", 2, "--chains", 100_000_000)
    assert code == 2 and err.startswith("error: --chains: 100000000") and "GB" in err and not trained
    (tmp_path / "file").write_text("")
    code, _, err = audit_request(capsys, run_dir, tmp_path / "file", "--request", 2, "--chains", 64)
    assert code == 2 and "--out" in err and not trained

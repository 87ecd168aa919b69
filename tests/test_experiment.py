"""experiment.py end to end on the bundled real MNIST digits: the CLI, the run directory,
determinism, the pretrained cache, wandb offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, REPO, run_cli, run_main


def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_its_directory_with_the_reference_metric_names(make_config, tmp_path):
    path, _ = make_config("e2e")
    result = run_cli("experiment.py", "--config", path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "unlearn epoch 2/2" in result.stdout
    (run_dir,) = (tmp_path / "logs").iterdir()
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "metrics.jsonl", "summary.json", "ckpt"}
    rows = read_rows(run_dir)
    keys = set().union(*rows)
    for key in ("Val (Train)_accuracy", "Val (Post Unlearning Setup)_accuracy", "pabi_steps", "epsilon", "delta",
                "stop_unlearn", "certified_epsilon", "certified_delta", "epsilon_published", "certificate_valid",
                "Val (Post Noise Addition)_accuracy", "Forget (Post Noise Addition)_accuracy",
                "Retain (Post Noise Addition)_accuracy", "loss", "accuracy", "sigma_t", "eta_t", "state_step",
                "retain_loss", "retain_accuracy", "Val (Unlearn)_accuracy", "Forget (Unlearn)_accuracy",
                "unlearn_epoch", "Test_accuracy", "Test_loss"):
        assert key in keys, key
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] is True and summary["config_file"] == str(path)
    assert summary["certificate"]["certified_epsilon"] == pytest.approx(1.0)
    # The top level says what was certified and tested under unambiguous names; the last
    # logged values (the fine-tuning's sigma_t 0.0, ...) are kept apart.
    assert summary["certified_epsilon"] == pytest.approx(1.0) and summary["certified_delta"] <= 1e-5
    assert summary["certificate_valid"] is True and summary["noisy_steps"] == summary["plan"]["noisy_steps"]
    (test_row,) = [r for r in rows if "Test_accuracy" in r]
    assert summary["test_accuracy"] == test_row["Test_accuracy"] and summary["test_loss"] == test_row["Test_loss"]
    assert "sigma_t" not in summary and summary["last_logged"]["sigma_t"] == 0.0
    assert "note: the original code labels a run with its Renyi target plus a constant" in result.stdout
    assert "(the reference would print" not in result.stdout
    assert [r["unlearn_epoch"] for r in rows if "Val (Unlearn)_accuracy" in r] == [1, 2]
    # state_step runs on from the noisy steps into fine-tuning
    steps = [r["state_step"] for r in rows if "loss" in r]
    assert steps == list(range(1, len(steps) + 1))
    # no staging directory is left behind
    assert not list((tmp_path / "logs").glob("*.partial-*"))


def test_the_same_config_twice_gives_identical_metrics(make_config, tmp_path):
    path, _ = make_config("twice", {"training.pretrained": False, "training.epochs": 2})
    assert run_main("--config", path, "--quiet", "--override", f"logs_dir={tmp_path / 'a'}") == 0
    assert run_main("--config", path, "--quiet", "--override", f"logs_dir={tmp_path / 'b'}") == 0
    (a,), (b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    assert a.name == b.name  # the run id comes from the config
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    # pretrained from scratch in the run: checkpoints of every epoch, step 0 included (D7)
    assert sorted(p.name for p in (a / "ckpt").iterdir()) == ["checkpoint_0.pt", "checkpoint_1.pt",
                                                               "checkpoint_2.pt"]


def test_dry_run_prints_the_plan_and_writes_nothing(make_config, tmp_path, capsys):
    path, _ = make_config("dry", {"checkpoints_dir": str(tmp_path / "ckpts")})
    assert run_main("--config", path, "--dry-run") == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("run_dir", "dataset", "model", "num_parameters", "algorithm", "pretrained", "noisy_steps", "sigma_t",
                "init_sigma", "certified_epsilon", "certified_delta", "epsilon_published", "certificate_valid"):
        assert key in plan
    assert plan["num_parameters"] == 3985 and plan["pretrained"] == "auto" and plan["noisy_steps"] == 6
    assert not (tmp_path / "logs").exists() and not (tmp_path / "ckpts").exists()


def test_user_errors_are_one_line_without_traceback(make_config):
    path, _ = make_config("bad", {"unlearning.delta": 2})
    result = run_cli("experiment.py", "--config", path)
    assert result.returncode == 2
    assert "unlearning.delta: got 2" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(Exception, match="unlearning.delta"):
        run_main("--config", path, "--debug")


def test_a_missing_pretrained_path_suggests_auto(make_config, tmp_path, capsys):
    path, _ = make_config("nockpt", {"training.pretrained": str(tmp_path / "logs/abc/ckpt")})
    assert run_main("--config", path) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "training.pretrained: auto" in err
    assert not list((tmp_path / "logs").glob("*"))  # the abandoned staging directory is gone


def test_a_pretrained_directory_loads_the_epoch_of_training_epochs(make_config, tmp_path, capsys):
    source, _ = make_config("source", {"training.pretrained": False, "training.epochs": 2})
    assert run_main("--config", source, "--quiet") == 0
    (ckpt,) = [p / "ckpt" for p in (tmp_path / "logs").iterdir()]
    path, _ = make_config("loader", {"training.pretrained": str(ckpt), "training.epochs": 1})
    capsys.readouterr()
    assert run_main("--config", path) == 0
    assert "checkpoint_1.pt" in capsys.readouterr().out
    path, _ = make_config("loader3", {"training.pretrained": str(ckpt), "training.epochs": 3})
    assert run_main("--config", path) == 2
    assert "has no checkpoint_3.pt" in capsys.readouterr().err


def test_two_processes_asking_for_one_pretrained_model_train_it_once(make_config, tmp_path):
    path, _ = make_config("race", {"checkpoints_dir": str(tmp_path / "cache"), "training.epochs": 4})
    command = [sys.executable, "experiment.py", "--config", str(path), "--pretrain-only"]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trained = [out for out, _ in outputs if "pretraining " in out]
    assert len(trained) == 1, outputs
    (entry,) = (tmp_path / "cache" / "pretrained").glob("*/model.pt")
    metrics = (entry.parent / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in line for line in metrics) == 4
    assert not list((tmp_path / "cache" / "pretrained").glob("*.lock"))  # no lock file left beside the models


def _count_under_the_cache_lock(root, rounds):
    from src.training.checkpoints import PretrainedCache

    cache, counter = PretrainedCache(root), Path(root) / "counter"
    for _ in range(rounds):
        with cache.lock("key"):
            value = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(value + 1))  # a lost update would show in the total


def test_the_cache_lock_excludes_while_removing_its_file(tmp_path):
    # The lock file is unlinked at every release; a waiter must not end up holding a
    # lock on the removed file while a newcomer locks a new one.
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_count_under_the_cache_lock, args=(str(tmp_path), 150)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert (tmp_path / "counter").read_text() == "450"
    assert not list((tmp_path / "pretrained").glob("*.lock"))


def test_wandb_offline_is_a_real_sink(make_config, tmp_path):
    pytest.importorskip("wandb")
    path, _ = make_config("wandb", {"wandb.mode": "offline", "wandb.log_dir": str(tmp_path / "wandb_logs"),
                                    "unlearning.epochs": 1})
    result = run_cli("experiment.py", "--config", path, "--quiet", env={"WANDB_MODE": None, "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "wandb_logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_ci_runs_the_readme_test_command_and_the_readme_run_command_names_a_real_config():
    readme = (REPO / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2  # exactly two set-up commands
    run_command, test_command = commands
    assert test_command.endswith("&& python -m pytest")
    assert "grep -m1 -- '&& python -m pytest' README.md" in (REPO / ".ci" / "run").read_text()
    config = run_command.split("--config ")[1].strip()
    assert (REPO / config).is_file() and (REPO / config) == QUICKSTART

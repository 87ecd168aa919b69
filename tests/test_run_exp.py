"""run_exp.py, the launcher: discovery, the job graph, scheduling, interruption, reports.

The pure pieces are tested in-process; the scheduler logic with a fake experiment script
(milliseconds per job); the whole launcher with real tiny runs of the bundled MNIST digits
(a few seconds each), kept few because each one pays for the torch import.
"""

from __future__ import annotations

import copy
import io
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from src.launch import command
from src.launch.local import LocalScheduler, make_slots
from src.launch.plan import (BLOCKED, FAILED, OK, PENDING, SKIPPED, ConfigFile, ConfigInfo, LaunchError,
                             block_dependents, build_jobs, dependency_levels, find_configs, log_path,
                             missing_checkpoint_warnings, read_config)
from src.launch.report import (ProgressDisplay, estimate_remaining, exit_code, format_duration, progress_line,
                               render_plan, render_table)
from src.launch.slurm import SlurmOptions, SubmititScheduler, dependency_groups, make_executor
from run_exp import choose_gpus

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart_mnist5k.yaml"


# ---------------------------------------------------------------------------------------
# Discovery


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discovery_is_recursive_sorted_and_yaml_only(tmp_path):
    for name in ["exps/b.yaml", "exps/a.yaml", "exps/sub/z.yaml", "exps/sub/deep/a.yaml", "exps/aa/x.yaml",
                 "exps/notes.txt", "exps/c.yml.bak", "exps/.hidden/h.yaml", "exps/.dot.yaml", "other/o.yaml"]:
        touch(tmp_path / name)
    found = find_configs(["exps", "other/o.yaml", "exps/a.yaml"], cwd=tmp_path)
    assert [f.display for f in found] == [
        "exps/a.yaml", "exps/aa/x.yaml", "exps/b.yaml", "exps/sub/deep/a.yaml", "exps/sub/z.yaml", "other/o.yaml"]
    assert found[0].path == Path("exps/a.yaml")  # relative to the working directory: what the child gets


def test_discovery_outside_the_working_directory_and_errors(tmp_path):
    touch(tmp_path / "far away" / "sub" / "c.yaml")
    found = find_configs([tmp_path / "far away"], cwd=tmp_path / "elsewhere")
    assert found[0].display == "far away/sub/c.yaml"
    assert found[0].path == tmp_path / "far away" / "sub" / "c.yaml"
    assert log_path(Path("run_logs"), found[0].display) == Path("run_logs/far away/sub/c.log")
    with pytest.raises(LaunchError, match="no such file or folder"):
        find_configs(["missing"], cwd=tmp_path)


# ---------------------------------------------------------------------------------------
# The job graph


def info(tmp_path, name, key=None, error=None, pretrained_path=None) -> ConfigInfo:
    file = ConfigFile(Path(f"exps/{name}.yaml"), f"exps/{name}.yaml")
    if error:
        return ConfigInfo(file, error=error)
    return ConfigInfo(file, run_id=name, run_dir=tmp_path / "logs" / name, pretrain_key=key,
                      pretrain_model=tmp_path / "ck" / key / "model.pt" if key else None,
                      pretrained_path=pretrained_path)


def test_each_uncached_pretraining_is_one_job_before_its_runs(tmp_path):
    touch(tmp_path / "ck" / "cached" / "model.pt")
    infos = [info(tmp_path, "a", "k1"), info(tmp_path, "b", "k2"), info(tmp_path, "c", "k1"),
             info(tmp_path, "d", "cached"), info(tmp_path, "e", "k1")]
    jobs = build_jobs(infos, Path("run_logs"))
    pretrains = [job for job in jobs if job.kind == "pretrain"]
    assert [(job.name, job.users, job.config) for job in pretrains] == [
        ("pretrain k1", 3, Path("exps/a.yaml")), ("pretrain k2", 1, Path("exps/b.yaml"))]
    assert jobs[:2] == pretrains  # pretrainings first
    runs = {job.name: job for job in jobs if job.kind == "run"}
    assert runs["exps/c.yaml"].deps == [pretrains[0]]
    assert runs["exps/b.yaml"].deps == [pretrains[1]]
    assert runs["exps/d.yaml"].deps == []  # cached already
    assert pretrains[0].log == Path("run_logs/_pretrain/k1.log")
    waves = dependency_levels(jobs)
    assert [len(w) for w in waves] == [3, 4]  # the pretrainings and the cached run, then the rest


def test_finished_duplicate_and_invalid_configs(tmp_path):
    touch(tmp_path / "logs" / "done" / "summary.json", "{}")
    infos = [info(tmp_path, "done", "k1"), info(tmp_path, "new", "k1"), info(tmp_path, "bad", error="error: x\n  y"),
             info(tmp_path, "new", "k1")]
    infos[3].file = ConfigFile(Path("exps/copy.yaml"), "exps/copy.yaml")
    jobs = build_jobs(infos, Path("run_logs"))
    status = {job.name: (job.status, job.detail) for job in jobs}
    assert status["exps/done.yaml"][0] == SKIPPED and "finished earlier" in status["exps/done.yaml"][1][0]
    assert status["exps/new.yaml"][0] == PENDING
    assert status["exps/bad.yaml"] == (FAILED, ["error: x", "  y"])
    assert status["exps/copy.yaml"][0] == SKIPPED and "same run as exps/new.yaml" in status["exps/copy.yaml"][1][0]
    assert next(job for job in jobs if job.kind == "pretrain").users == 1  # the skipped run needs no pretraining

    forced = build_jobs(infos[:2], Path("run_logs"), force=True)
    assert [job.status for job in forced if job.kind == "run"] == [PENDING, PENDING]


def test_an_explicit_checkpoint_path_waits_for_the_run_that_writes_it(tmp_path):
    producer = info(tmp_path, "producer", "k1")
    user = info(tmp_path, "user", pretrained_path=tmp_path / "logs" / "producer" / "ckpt")
    orphan = info(tmp_path, "orphan", pretrained_path=tmp_path / "nowhere" / "ckpt")
    jobs = build_jobs([user, producer, orphan], Path("run_logs"))
    runs = {job.name: job for job in jobs if job.kind == "run"}
    assert runs["exps/user.yaml"].deps == [runs["exps/producer.yaml"]]
    assert [len(w) for w in dependency_levels(jobs)] == [2, 1, 1]  # pretrain+orphan, producer, user
    warnings = missing_checkpoint_warnings(jobs)
    assert warnings == [f"exps/orphan.yaml: training.pretrained {tmp_path / 'nowhere' / 'ckpt'} does not exist "
                        "and no config here produces it"]
    plan_text = render_plan(jobs, warnings, "1 CPU worker(s)")
    assert "run       exps/user.yaml" in plan_text and "after exps/producer.yaml" in plan_text
    assert "warning: exps/orphan.yaml" in plan_text

    # the pretraining fails: the producer is blocked, and through it the user
    pretrain = next(job for job in jobs if job.kind == "pretrain")
    pretrain.status = FAILED
    assert block_dependents(jobs) == [runs["exps/producer.yaml"], runs["exps/user.yaml"]]
    assert runs["exps/producer.yaml"].detail == ["blocked: pretrain k1 failed"]
    assert runs["exps/user.yaml"].detail == [
        "blocked: exps/producer.yaml (it produces the pretrained checkpoint) blocked"]
    assert runs["exps/orphan.yaml"].status == PENDING


# ---------------------------------------------------------------------------------------
# Progress and report


def test_durations_and_eta():
    assert [format_duration(s) for s in (0, 7.4, 65, 3725, None)] == ["0:00", "0:07", "1:05", "1:02:05", "?"]
    assert estimate_remaining([], [1.0], 3, 2) is None
    # mean 10 s: 4 left + a running job 4 s in (6 s to go) = 46 s of work over 2 workers
    assert estimate_remaining([8.0, 12.0], [4.0], 4, 2) == pytest.approx(23.0)
    assert estimate_remaining([10.0], [], 1, 8) == pytest.approx(10.0)  # one job left uses one worker
    counts = Counter({OK: 3, FAILED: 1, BLOCKED: 1, "running": 2, PENDING: 4})
    assert progress_line(counts, 42, 70) == \
        "[5/11] 3 done, 2 running, 2 failed, 4 left | 0:42 elapsed, ~1:10 left"


def test_progress_display_in_place_on_a_terminal_and_throttled_elsewhere():
    tty = io.StringIO()
    display = ProgressDisplay(tty, is_tty=True)
    display.update("[0/2] a | 0:01")
    display.update("[0/2] a | 0:01")  # unchanged: nothing drawn
    display.event("     ok  x")
    display.update("[1/2] b | 0:02")
    display.close()
    assert tty.getvalue() == "\r\x1b[K[0/2] a | 0:01\r\x1b[K     ok  x\n\r\x1b[K[1/2] b | 0:02\r\x1b[K"

    log = io.StringIO()
    display = ProgressDisplay(log, is_tty=False, interval=3600)
    for line in ["[0/2] a | 0:01", "[0/2] a | 0:02", "[1/2] b | 0:03"]:
        display.update(line)
    assert log.getvalue().splitlines() == ["[0/2] a | 0:01", "[1/2] b | 0:03"]  # the clock alone is not news


def test_report_table_and_exit_codes(tmp_path):
    jobs = build_jobs([info(tmp_path, "a", "k1"), info(tmp_path, "b", "k1"), info(tmp_path, "c")], tmp_path / "rl")
    pretrain, a, b, c = jobs
    pretrain.status, pretrain.seconds, pretrain.detail = FAILED, 3.25, ["error: pretraining exploded"]
    a.status, a.detail = BLOCKED, ["blocked: pretrain k1 failed"]
    b.status, b.detail = BLOCKED, ["blocked: pretrain k1 failed"]
    c.status, c.seconds, c.detail = OK, 61.0, ["/logs/c"]
    table = render_table(jobs, 75.0)
    lines = table.splitlines()
    assert lines[0].split() == ["status", "time", "run", "detail"]
    assert lines[1].split()[:3] == ["FAILED", "3.2s", "pretrain"] and lines[1].endswith("error: pretraining exploded")
    assert lines[2].strip() == f"log: {tmp_path / 'rl' / '_pretrain' / 'k1.log'}"
    assert "BLOCKED" in lines[3] and "blocked: pretrain k1 failed" in lines[3]
    assert lines[-1] == "1 ok, 1 failed, 2 blocked in 1:15"
    assert exit_code(jobs) == 1 and exit_code(jobs, signal.SIGTERM) == 143
    c.status = SKIPPED
    assert exit_code([c]) == 0


def test_error_lines_from_a_log():
    traceback = "Traceback (most recent call last):\n  File x\nValueError: bad shape\n"
    assert command.error_excerpt(traceback) == ["ValueError: bad shape"]
    config_error = "epoch 1\nerror: f.yaml is not a valid experiment config:\n  a.b: unknown key\n  c: too big\n"
    assert command.error_excerpt(config_error + "\n[run_exp] exit code 2 after 3.0 s\n") == [
        "error: f.yaml is not a valid experiment config:", "  a.b: unknown key", "  c: too big"]
    assert command.error_excerpt("") == []


def test_log_framing_and_commands_with_spaces(tmp_path):
    argv = command.experiment_command("/repo/experiment.py", "my exps/a b.yaml", pretrain_only=True, threads=2)
    assert argv[1:] == ["/repo/experiment.py", "--config", "my exps/a b.yaml", "--pretrain-only", "--max-threads", "2"]
    log = tmp_path / "sub" / "x.log"
    command.open_log(log, argv, {"CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "2"}).close()
    command.close_log(log, 2, 4.25)
    assert log.read_text().splitlines()[0].startswith("[run_exp] CUDA_VISIBLE_DEVICES=3 ")
    assert "'my exps/a b.yaml'" in log.read_text()
    assert command.read_outcome(log) == (2, 4.2)


def test_slots_share_gpus_round_robin_and_cores():
    gpu = make_slots(n_gpus=2, offset=1, jobs_per_slot=2, cores=16)
    assert [s.cuda_devices for s in gpu] == ["1", "2", "1", "2"] and {s.threads for s in gpu} == {4}
    cpu = make_slots(n_gpus=0, offset=0, jobs_per_slot=3, cores=2)
    assert [s.cuda_devices for s in cpu] == ["", "", ""] and {s.threads for s in cpu} == {1}
    assert choose_gpus(None, 0)[0] == 0 and choose_gpus(None, 4)[0] == 1 and choose_gpus(0, 4)[0] == 0
    assert choose_gpus(3, 0) == (0, "-n 3: no GPU found (nvidia-smi), using CPU workers")


# ---------------------------------------------------------------------------------------
# Scheduling with a fake experiment.py (fast)

FAKE_EXPERIMENT = """
import os, sys
config = sys.argv[sys.argv.index("--config") + 1]
print("threads", sys.argv[sys.argv.index("--max-threads") + 1], os.environ.get("OMP_NUM_THREADS"), "gpus", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
if "--pretrain-only" in sys.argv and "k-broken" in config:
    print("error: pretraining exploded", file=sys.stderr)
    sys.exit(2)
if "crash" in config:
    raise ValueError("a bug")
print("ran", config)
"""


def fake_jobs(tmp_path):
    script = touch(tmp_path / "fake_experiment.py", FAKE_EXPERIMENT)
    infos = [info(tmp_path, "a-k-broken", "k-broken"), info(tmp_path, "b", "k-good"),
             info(tmp_path, "c-k-broken", "k-broken"), info(tmp_path, "crash")]
    return script, build_jobs(infos, tmp_path / "run_logs")


def check_fake_outcome(tmp_path, jobs):
    status = {job.name: (job.status, job.detail[-1]) for job in jobs}
    assert status["pretrain k-broken"] == (FAILED, "error: pretraining exploded")
    assert status["pretrain k-good"][0] == OK
    assert status["exps/a-k-broken.yaml"] == (BLOCKED, "blocked: pretrain k-broken failed")
    assert status["exps/c-k-broken.yaml"] == (BLOCKED, "blocked: pretrain k-broken failed")
    assert status["exps/b.yaml"][0] == OK
    assert status["exps/crash.yaml"] == (FAILED, "ValueError: a bug")
    assert "ran exps/b.yaml" in (tmp_path / "run_logs" / "exps" / "b.log").read_text()


def test_local_scheduler_blocks_the_runs_of_a_failed_pretraining(tmp_path):
    script, jobs = fake_jobs(tmp_path)
    out = io.StringIO()
    slots = make_slots(0, 0, 2, cores=4)
    scheduler = LocalScheduler(jobs, slots, script, tmp_path, ProgressDisplay(out, is_tty=False), poll_seconds=0.02)
    assert scheduler.run() is None
    check_fake_outcome(tmp_path, jobs)
    assert "threads 2 2 gpus ''" in (tmp_path / "run_logs" / "exps" / "b.log").read_text()
    assert "BLOCKED  exps/a-k-broken.yaml: blocked: pretrain k-broken failed" in out.getvalue()


def test_submitit_waves_block_the_runs_of_a_failed_pretraining(tmp_path):
    script, jobs = fake_jobs(tmp_path)
    options = SlurmOptions(cluster="debug", folder=tmp_path / "submitit", gpus_per_run=0, cpus_per_run=1,
                           poll_seconds=0.01)
    scheduler = SubmititScheduler(jobs, options, script, tmp_path, ProgressDisplay(io.StringIO(), is_tty=False))
    assert scheduler.run() is None
    check_fake_outcome(tmp_path, jobs)


def test_slurm_arrays_are_grouped_by_what_they_wait_for(tmp_path):
    jobs = build_jobs([info(tmp_path, "a", "k1"), info(tmp_path, "b", "k2"), info(tmp_path, "c", "k1"),
                       info(tmp_path, "d")], Path("run_logs"))
    p1, p2, a, b, c, d = jobs
    groups = dependency_groups([a, b, c, d], {p1: "7_0", p2: "7_1"})
    assert groups == [({"dependency": "afterok:7_0", "kill-on-invalid-dep": "yes"}, [a, c]),
                      ({"dependency": "afterok:7_1", "kill-on-invalid-dep": "yes"}, [b]), ({}, [d])]
    assert dependency_groups([a, b, c, d], {}) == [({}, [a, b, c, d])]  # no Slurm: no dependencies


def test_slurm_submission_file(tmp_path, monkeypatch):
    """What sbatch would get, without a cluster: submitit's own rendering of our parameters."""
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun exists
    options = SlurmOptions(cluster="slurm", folder=tmp_path, partition="gpu", time_min=90, gpus_per_run=1,
                           cpus_per_run=4, array_parallelism=8)
    executor = make_executor(options)
    pretrain, run = build_jobs([info(tmp_path, "a", "k1")], Path("run_logs"))
    (extra, group), = dependency_groups([run], {pretrain: "12_0"})
    executor.update_parameters(slurm_additional_parameters=extra)
    text = slurm._make_sbatch_string(command="CMD", folder=tmp_path, map_count=20, **executor._executor.parameters)
    # --time=93: the run's 90 minutes, and 3 for submitit's USR2 90 s before the end, start-up and a clean stop
    for line in ["--array=0-19%8", "--partition=gpu", "--time=93", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--dependency=afterok:12_0", "--kill-on-invalid-dep=yes"]:
        assert f"#SBATCH {line}\n" in text, line


# ---------------------------------------------------------------------------------------
# The launcher on real tiny runs


def tiny_config(path: Path, tmp_path: Path, name: str, grad_clip: float = 10.0, **changes) -> Path:
    """The quick-start, one epoch of each phase; runs that differ only after pretraining
    (grad_clip) share one `auto` pretrained model."""
    config = copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
    config["training"]["epochs"] = 1
    config["unlearning"]["epochs"] = 1
    config["unlearning"]["iteration"]["grad_clip"] = grad_clip
    config.update(name=name, logs_dir=str(tmp_path / "logs"), checkpoints_dir=str(tmp_path / "ckpt"))
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def launch(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_exp.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def finished_runs(tmp_path: Path) -> list[str]:
    return sorted(p.parent.name.rsplit("-", 1)[0] for p in (tmp_path / "logs").glob("*/summary.json"))


def assert_results_whole(tmp_path: Path, names: list[str]) -> None:
    """One result directory per config, no staging leftovers, every metrics line JSON."""
    dirs = sorted(p.name for p in (tmp_path / "logs").iterdir())  # no .claims/ left either
    assert [d.rsplit("-", 1)[0] for d in dirs] == sorted(names), dirs
    for d in (tmp_path / "logs").iterdir():
        assert (d / "summary.json").is_file()
        lines = (d / "metrics.jsonl").read_text().splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def test_folder_with_a_broken_config_finishes_the_rest_and_resumes(tmp_path):
    exps = tmp_path / "exps"
    tiny_config(exps / "top.yaml", tmp_path, "top", 10)
    tiny_config(exps / "sub" / "one.yaml", tmp_path, "one", 11)
    tiny_config(exps / "sub" / "deeper dir" / "two.yaml", tmp_path, "two", 12)
    tiny_config(exps / "invalid.yaml", tmp_path, "invalid", model__colour="red")

    first = launch(tmp_path, "-e", "exps", "-n", "0", "-j", "3")
    assert first.returncode == 1, first.stderr
    assert finished_runs(tmp_path) == ["one", "top", "two"]
    failed = [line for line in first.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "exps/invalid.yaml" in failed[0] and "not a valid experiment config" in failed[0]
    assert "model.colour: unknown key" in first.stdout  # the validation message, under its row
    assert first.stdout.splitlines()[-1].startswith("4 ok, 1 failed")  # 3 runs + the pretraining
    for log in ["exps/top.log", "exps/sub/one.log", "exps/sub/deeper dir/two.log", "exps/invalid.log"]:
        assert (tmp_path / "run_logs" / log).is_file(), log
    # the shared pretraining ran once, in its own job, before the runs that needed it
    logs = [p.read_text() for p in (tmp_path / "run_logs").rglob("*.log")]
    assert sum(text.count("pretraining mnist_5k") for text in logs) == 1
    assert len(list((tmp_path / "run_logs" / "_pretrain").iterdir())) == 1
    cached = list((tmp_path / "ckpt" / "pretrained").glob("*/model.pt"))
    assert len(cached) == 1
    # the launcher looks for the model where the trainer put it (its restated cache layout)
    assert read_config(ConfigFile(Path("exps/top.yaml"), "exps/top.yaml"), tmp_path).pretrain_model == cached[0]

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "logs").glob("*/summary.json")}
    second = launch(tmp_path, "-e", "exps", "-n", "0", "-j", "3")
    assert second.returncode == 1
    statuses = Counter(line.split()[0] for line in second.stdout.splitlines()[1:-1] if line[:1].strip())
    assert statuses == Counter({"skipped": 3, "FAILED": 1})
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_killed_launcher_leaves_whole_results_and_a_rerun_completes(tmp_path):
    # pretrained: false, so that each run trains its own model and nothing else runs
    for name in ("k1", "k2"):
        tiny_config(tmp_path / "exps" / f"{name}.yaml", tmp_path, name, training__pretrained=False)
    cmd = [sys.executable, str(ROOT / "run_exp.py"), "-e", "exps", "-n", "0", "-j", "1"]
    launcher = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240  # generous: the CI box may be busy
    while time.monotonic() < deadline and launcher.poll() is None:
        if finished_runs(tmp_path) == ["k1"] and list((tmp_path / "logs").glob("k2-*.partial-*")):
            break  # one run done, the other mid-way
        time.sleep(0.1)
    else:
        launcher.kill()
        pytest.fail(f"never saw k1 finished and k2 running: {launcher.communicate()}")
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in out and "k2.yaml" in out
    assert not list((tmp_path / "logs").glob("*.partial-*"))  # k2 dropped its staging directory
    assert finished_runs(tmp_path) == ["k1"]

    again = launch(tmp_path, "-e", "exps", "-n", "0", "-j", "1")
    assert again.returncode == 0, again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()[1:-1]] == ["skipped", "ok"]
    assert_results_whole(tmp_path, ["k1", "k2"])


def test_dry_run_lists_the_plan_and_runs_nothing(tmp_path):
    from src.config import load_config, run_id

    exps = tmp_path / "my exps"
    tiny_config(exps / "a.yaml", tmp_path, "a", 10)
    tiny_config(exps / "b.yaml", tmp_path, "b", 11)
    done = tiny_config(exps / "done.yaml", tmp_path, "done", 12)
    tiny_config(exps / "bad.yaml", tmp_path, "bad", model__colour="red")
    touch(tmp_path / "logs" / run_id(load_config(done)) / "summary.json", "{}")  # as if finished

    result = launch(tmp_path, "-e", "my exps", "--dry-run", "-n", "0", "-j", "2")
    assert result.returncode == 1  # an invalid config
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]  # not continuations
    assert lines[0].startswith("pretrain  mnist_5k-tiny_net-") and "for 2 run(s)" in lines[0]
    assert [line.split()[0] for line in lines[1:5]] == ["run", "run", "invalid", "skip"]
    assert "after pretrain mnist_5k" in lines[1] and "unknown key" in result.stdout and "finished earlier" in lines[4]
    assert lines[-1] == "would pretrain 1, run 2 on 2 CPU worker(s), 1 thread(s) each; skip 1; invalid 1"
    assert not (tmp_path / "run_logs").exists() and not (tmp_path / "ckpt").exists()
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [run_id(load_config(done))]


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in [(["-e", "missing"], "error: -e missing: no such file or folder"),
                          (["-e", "empty"], "error: no *.yaml under empty")]:
        result = launch(tmp_path, *args)
        assert (result.returncode, result.stderr.strip()) == (2, message)


def test_submitit_local_executor_runs_a_pretraining_then_its_runs(tmp_path):
    tiny_config(tmp_path / "exps" / "s1.yaml", tmp_path, "s1", 10)
    tiny_config(tmp_path / "exps" / "s2.yaml", tmp_path, "s2", 11)
    result = launch(tmp_path, "-e", "exps", "--backend", "slurm", "--cluster", "local", "--gpus-per-run", "0",
                    "--cpus-per-run", "1", "--time", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert finished_runs(tmp_path) == ["s1", "s2"]
    assert [line.split()[0] for line in result.stdout.splitlines()[1:-1]] == ["ok", "ok", "ok"]
    assert len(list((tmp_path / "run_logs" / "_pretrain").iterdir())) == 1
    assert any((tmp_path / "run_logs" / "_submitit").iterdir())

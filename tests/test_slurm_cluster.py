"""`run_exp.py --backend slurm` against a real Slurm cluster, and the pieces it rests on.

The first half runs everywhere: the parsing of Slurm's answers (captured from Slurm
22.05), the checks of a request against the cluster, the job body's own time limit, and
the following of jobs whose states are scripted.

The second half needs a running cluster: `tools/slurm/start_local_cluster.sh` brings up
a one-node Slurm on a Debian machine (root, ~2 minutes; `.ci/run` does it). Without one
those tests skip and say why; with RUN_EXP_SLURM_TESTS=required (set by .ci/run) they
fail instead, so that CI cannot pass them by skipping. That cluster has no accounting,
no GPU, MaxTime=60 and MaxArraySize=4, and 2 CPUs: runs are tiny mnist_5k configs of one
epoch, one CPU each.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

import run_exp
from src import claims
from src.launch import command, slurm_cli
from src.launch.plan import BLOCKED, FAILED, RUNNING, LaunchError, build_jobs, read_config, ConfigFile
from src.launch.report import ProgressDisplay
from src.launch.slurm import SlurmOptions
from src.launch.slurm_scheduler import SlurmScheduler, read_record, write_record
from test_run_exp import ROOT, finished_runs, info, tiny_config, touch

# ---------------------------------------------------------------------------------------
# Slurm's answers (captured from the Slurm 22.05 cluster of tools/slurm)


def test_slurm_time_limits_are_read_in_every_form():
    assert [slurm_cli.parse_slurm_minutes(t) for t in
            ("infinite", "UNLIMITED", "1:00:00", "30:00", "45", "2-00:00:00", "1-12", "1-02:30", "0:59:59")] == \
        [None, None, 60, 30, 45, 2880, 2160, 1590, 59]


def test_sinfo_partitions_gpus_and_refusals():
    text = "debug*|up|1:00:00|(null)|2|1\ngpu|up|2-00:00:00|gpu:a100:4(S:0-1)|64|3\n" \
           "gpu|up|infinite|gpu:2|32+|1\nold|down|1:00:00|(null)|2|1\n"
    assert slurm_cli.parse_sinfo(text, None) == {"partition": "debug", "max_time_min": 60, "has_gpus": False,
                                                 "max_cpus": 2, "nodes": 1}
    assert slurm_cli.parse_sinfo(text, "gpu") == {"partition": "gpu", "max_time_min": None, "has_gpus": True,
                                                  "max_cpus": 64, "nodes": 4}
    with pytest.raises(LaunchError, match=r"--partition nope: no such Slurm partition \(sinfo lists: debug, gpu, old\)"):
        slurm_cli.parse_sinfo(text, "nope")
    with pytest.raises(LaunchError, match="--partition old: the partition is down"):
        slurm_cli.parse_sinfo(text, "old")
    with pytest.raises(LaunchError, match="no default partition"):
        slurm_cli.parse_sinfo("a|up|1:00|(null)|2|1\n", None)
    assert slurm_cli.parse_config("MaxArraySize            = 4\nAccountingStorageType   = accounting_storage/none\n") \
        == {"max_array_size": 4, "accounting": False}
    assert slurm_cli.parse_config("AccountingStorageType = accounting_storage/slurmdbd\n") == \
        {"max_array_size": 1001, "accounting": True}


def test_squeue_and_sacct_lines():
    squeue = "14_0|PENDING|DependencyNeverSatisfied\n13|FAILED|NonZeroExitCode\n6_3|RUNNING|None\n"
    states = slurm_cli.parse_squeue(squeue)
    assert states["14_0"] == slurm_cli.JobState("PENDING", "DependencyNeverSatisfied") and states["14_0"].active
    assert not states["13"].active and states["13"].describe() == "FAILED (NonZeroExitCode)"
    assert states["6_3"].describe() == "RUNNING"
    assert slurm_cli.parse_sacct("7_1|CANCELLED by 0\n8|TIMEOUT\n") == {
        "7_1": slurm_cli.JobState("CANCELLED"), "8": slurm_cli.JobState("TIMEOUT")}


# ---------------------------------------------------------------------------------------
# The request against the cluster, before anything is submitted


def cpu_cluster(**changes) -> slurm_cli.ClusterInfo:
    values = dict(partition="debug", max_time_min=60, has_gpus=False, max_cpus=2, nodes=1, max_array_size=4,
                  accounting=False)
    return slurm_cli.ClusterInfo(**{**values, **changes})


def fitted(monkeypatch, cluster, **given) -> Namespace:
    monkeypatch.setattr(slurm_cli, "probe_cluster", lambda partition: cluster)
    args = Namespace(partition=None, time=None, gpus_per_run=None, cpus_per_run=2, **given)
    run_exp.fit_to_cluster(args)
    return args


def test_defaults_fit_the_cluster_and_impossible_requests_are_refused(monkeypatch):
    args = fitted(monkeypatch, cpu_cluster())
    assert (args.gpus_per_run, args.time, args.partition) == (0, 57, "debug")  # CPU partition, 60 min - 3
    args = fitted(monkeypatch, cpu_cluster(has_gpus=True, max_time_min=None))
    assert (args.gpus_per_run, args.time) == (1, 1440)
    for given, message in [({"gpus_per_run": 1}, "--gpus-per-run 1: partition debug has no GPU"),
                           ({"time": 58}, "--time 58: partition debug allows 60 min per job, and a job needs 3 min "
                                          "more than its run; use --time 57 or less"),
                           ({"cpus_per_run": 3}, "--cpus-per-run 3: the nodes of partition debug have at most 2")]:
        with pytest.raises(LaunchError, match=re.escape(message)):
            cluster = cpu_cluster()
            monkeypatch.setattr(slurm_cli, "probe_cluster", lambda partition: cluster)
            run_exp.fit_to_cluster(Namespace(**{"partition": None, "time": None, "gpus_per_run": None,
                                                "cpus_per_run": 2, **given}))


# ---------------------------------------------------------------------------------------
# The job body's time limit


SLOW_EXPERIMENT = """
import sys, time
print("working", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted: nothing of this run was kept", flush=True)
    sys.exit(130)
"""


def test_the_job_body_stops_a_run_at_its_time_limit_and_says_so(tmp_path):
    script = touch(tmp_path / "slow.py", SLOW_EXPERIMENT)
    log = tmp_path / "run.log"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"stopped: time limit \(--time 0.03 min\)"):
        command.run_logged([sys.executable, str(script)], str(log), str(tmp_path), {}, time_limit_s=1.8)
    assert time.monotonic() - start < 30
    lines = log.read_text().splitlines()
    assert "interrupted: nothing of this run was kept" in lines  # SIGINT: it dropped its staging directory
    assert lines[-2:] == ["[run_exp] stopped: time limit (--time 0.03 min)", lines[-1]]
    assert command.read_outcome(log)[0] == 130 and command.read_stopped(log) == "time limit (--time 0.03 min)"


# ---------------------------------------------------------------------------------------
# Following jobs, with Slurm's answers scripted


class ScriptedSlurm:
    """job_states and cancel, answering from a list of squeue snapshots."""

    def __init__(self, snapshots):
        self.snapshots = list(snapshots)
        self.cancelled = []

    def job_states(self, ids, accounting):
        states = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        return {i: s for i, s in states.items() if i in ids}

    def cancel(self, ids):
        self.cancelled += list(ids)


def test_following_without_accounting_never_waits_on_a_job_slurm_has_given_up(tmp_path, monkeypatch):
    """A pretraining fails: its runs are blocked at once and cancelled, also one that Slurm
    left pending as DependencyNeverSatisfied; a job Slurm no longer knows (no accounting,
    MinJobAge passed) and whose log has no footer ended without finishing."""
    jobs = build_jobs([info(tmp_path, "a", "k1"), info(tmp_path, "b", "k1"), info(tmp_path, "c")], tmp_path / "rl")
    pretrain, a, b, c = jobs
    ids = {pretrain: "5", a: "6_0", b: "6_1", c: "7"}
    S = slurm_cli.JobState
    slurm = ScriptedSlurm([{"5": S("RUNNING"), "6_0": S("PENDING", "Dependency"), "6_1": S("PENDING", "Dependency"),
                            "7": S("RUNNING")},
                           {"5": S("FAILED", "NonZeroExitCode"), "6_0": S("PENDING", "DependencyNeverSatisfied"),
                            "6_1": S("PENDING", "Dependency")}])  # 7: forgotten
    monkeypatch.setattr(slurm_cli, "job_states", slurm.job_states)
    monkeypatch.setattr(slurm_cli, "cancel", slurm.cancel)
    for job in jobs:
        job.status = RUNNING
    touch(pretrain.log, "[run_exp] python experiment.py\n[run_exp] slurm job 5 on node\nerror: exploded\n\n"
                        "[run_exp] exit code 2 after 3.0 s\n")
    touch(c.log, "[run_exp] python experiment.py\n[run_exp] slurm job 7 on node\nepoch 1\n")  # killed: no footer
    touch(a.log, "[run_exp] an older attempt\n[run_exp] exit code 0 after 1.0 s\n")  # not this job's log
    options = SlurmOptions(poll_seconds=0.01, accounting=False)
    scheduler = SlurmScheduler(jobs, options, Path("experiment.py"), tmp_path, ProgressDisplay(io.StringIO()))
    scheduler.job_ids = ids
    scheduler.started = {job: time.monotonic() - 60 for job in jobs}
    scheduler._follow()
    assert (pretrain.status, pretrain.detail) == (FAILED, ["error: exploded"])
    assert [(j.status, j.detail) for j in (a, b)] == [(BLOCKED, [f"blocked: {pretrain.name} failed"])] * 2
    assert sorted(slurm.cancelled) == ["6_0", "6_1"]
    assert "not run: blocked" in a.log.read_text() and "exit code 0" not in a.log.read_text()
    assert (c.status, c.detail) == (FAILED, ["Slurm job 7 ended without finishing its command: no longer known to "
                                             "Slurm (no accounting to ask)"])


def test_the_table_says_time_limit_and_cancelled(tmp_path, monkeypatch):
    jobs = build_jobs([info(tmp_path, "slow"), info(tmp_path, "stopped"), info(tmp_path, "gone")], tmp_path / "rl")
    slow, stopped, gone = jobs
    S = slurm_cli.JobState
    slurm = ScriptedSlurm([{"9": S("TIMEOUT", "TimeLimit"), "10": S("CANCELLED", "None"), "11": S("COMPLETED")}])
    monkeypatch.setattr(slurm_cli, "job_states", slurm.job_states)
    monkeypatch.setattr(slurm_cli, "cancel", slurm.cancel)
    touch(slow.log, "[run_exp] python experiment.py\n[run_exp] slurm job 9 on node\nepoch 7\n")  # killed by Slurm
    touch(stopped.log, "[run_exp] python experiment.py\n[run_exp] slurm job 10 on node\ninterrupted\n\n"
                       "[run_exp] exit code 130 after 5.0 s\n")
    touch(gone.log, "[run_exp] python experiment.py\n[run_exp] slurm job 11 on node\n\n"
                    "[run_exp] stopped: time limit (--time 5 min)\n[run_exp] exit code 130 after 301.0 s\n")
    scheduler = SlurmScheduler(jobs, SlurmOptions(poll_seconds=0.01, accounting=False), Path("experiment.py"),
                               tmp_path, ProgressDisplay(io.StringIO()))
    scheduler.job_ids = {slow: "9", stopped: "10", gone: "11"}
    scheduler.started = {job: time.monotonic() - 60 for job in jobs}
    for job in jobs:
        job.status = RUNNING
    scheduler._follow()
    assert slow.detail == ["time limit: Slurm job 9 reached its Slurm limit (the run's --time plus 3 min)"]
    assert stopped.detail == ["cancelled: Slurm job 10 was cancelled (CANCELLED; scancel, or by the cluster)",
                              "interrupted"]
    assert gone.detail == ["time limit (--time 5 min), Slurm job 11"]
    assert {job.status for job in jobs} == {FAILED} and gone.seconds == 301.0


def test_a_job_record_is_the_job_id_of_its_run(tmp_path):
    (job,) = build_jobs([info(tmp_path, "a")], tmp_path / "rl")
    write_record(job, "12_3")
    record = read_record(job)
    assert record["job_id"] == "12_3" and record["target"] == str(tmp_path / "logs" / "a")
    assert job.log.with_suffix(".job").is_file()


# ---------------------------------------------------------------------------------------
# A real cluster


REQUIRED = os.environ.get("RUN_EXP_SLURM_TESTS") == "required"


def cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm commands here (sinfo, sbatch)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer"
    if "is UP" not in ping.stdout:
        return f"slurmctld is not up: {(ping.stdout + ping.stderr).strip()}"
    if not re.search(r"^(idle|mixed|allocated|completing)", nodes.stdout, re.M):
        return f"no node is up (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        message = f"{problem}; start a test cluster with: sudo tools/slurm/start_local_cluster.sh"
        if REQUIRED:
            pytest.fail(f"RUN_EXP_SLURM_TESTS=required, but {message}")
        pytest.skip(message)
    return slurm_cli.probe_cluster(None)


def slurm_launch(cwd: Path, *args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_exp.py"), "--backend", "slurm", "--cpus-per-run", "1",
                           *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def table(result) -> dict[str, str]:
    """The final table: run -> its row."""
    rows = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] in ("ok", "FAILED", "BLOCKED", "skipped", "interrupted"):
            name = " ".join(fields[2:4]) if fields[2] == "pretrain" else fields[2]
            rows[name] = line
    return rows


def queue(job_ids) -> dict[str, slurm_cli.JobState]:
    return slurm_cli.job_states(list(job_ids), accounting=False)


def log_job(log: Path) -> str | None:
    return command.read_header_job(log)


def test_slurm_happy_path_with_a_broken_config_and_no_accounting(cluster, tmp_path):
    assert not cluster.accounting and not cluster.has_gpus  # what the following relies on
    assert subprocess.run(["sacct", "-n"], capture_output=True).returncode != 0  # sacct fails here
    tiny_config(tmp_path / "exps" / "a.yaml", tmp_path, "a", 10)
    tiny_config(tmp_path / "exps" / "b.yaml", tmp_path, "b", 11)
    tiny_config(tmp_path / "exps" / "bad.yaml", tmp_path, "bad", model__colour="red")
    result = slurm_launch(tmp_path, "-e", "exps")
    assert result.returncode == 1, result.stdout + result.stderr  # the broken config
    rows = table(result)
    assert [row.split()[0] for row in rows.values()] == ["ok", "ok", "ok", "FAILED"], result.stdout
    assert "model.colour: unknown key" in result.stdout
    assert "no accounting: jobs followed with squeue): 0 GPU(s), 1 CPU(s), 57 min per run" in result.stderr
    assert finished_runs(tmp_path) == ["a", "b"]
    logs = tmp_path / "run_logs"
    jobs = [log_job(logs / "exps" / "a.log"), log_job(logs / "exps" / "b.log")]
    assert all(jobs) and jobs[0].split("_")[0] == jobs[1].split("_")[0]  # one array, each log names its task
    sbatch = "".join(p.read_text() for p in (logs / "_submitit").glob("*_submission.sh"))
    assert "--gpus" not in sbatch and "--time=60" in sbatch  # CPU defaults; the run's 57 min + 3
    assert not list(logs.rglob("*.job"))  # records of ended jobs are dropped
    assert not (logs / "exps" / "bad.job").exists() and "not a valid experiment config" in \
        (logs / "exps" / "bad.log").read_text()


def test_slurm_a_failed_pretraining_blocks_its_runs_at_once(cluster, tmp_path):
    tiny_config(tmp_path / "exps" / "a.yaml", tmp_path, "a", 10)
    tiny_config(tmp_path / "exps" / "b.yaml", tmp_path, "b", 11)
    entry = read_config(ConfigFile(Path("exps/a.yaml"), "exps/a.yaml"), tmp_path).pretrain_model.parent
    touch(entry, "a file where the pretrained model's folder goes: the pretraining fails")
    result = slurm_launch(tmp_path, "-e", "exps")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = table(result)
    pretrain = next(name for name in rows if name.startswith("pretrain"))
    assert rows[pretrain].split()[0] == "FAILED"
    for run in ("exps/a.yaml", "exps/b.yaml"):
        assert rows[run].split()[0] == "BLOCKED" and rows[run].endswith(f"blocked: {pretrain} failed"), rows[run]
        assert (tmp_path / "run_logs" / run).with_suffix(".log").read_text().startswith("[run_exp] ")
    # nothing left in the queue: Slurm would keep such jobs pending forever
    submitted = re.findall(r"submitted \d job\(s\): (\d+)", result.stderr)
    left = [s for s in queue([f"{i}_{k}" for i in submitted for k in range(2)] + submitted).values() if s.active]
    assert not left, left


def test_slurm_time_limit_and_scancel_say_so_and_a_rerun_finishes(cluster, tmp_path):
    tiny_config(tmp_path / "exps" / "long.yaml", tmp_path, "long", training__pretrained=False,
                training__epochs=20000)  # far more than a minute on any CPU
    tiny_config(tmp_path / "exps" / "short.yaml", tmp_path, "short", training__pretrained=False)
    launcher = subprocess.Popen([sys.executable, str(ROOT / "run_exp.py"), "--backend", "slurm", "--cpus-per-run",
                                 "1", "--time", "1", "-e", "exps"], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    record = tmp_path / "run_logs" / "exps" / "short.job"
    deadline = time.monotonic() + 120
    cancelled = None
    while time.monotonic() < deadline and cancelled is None:
        job = json.loads(record.read_text())["job_id"] if record.is_file() else None
        if job and (queue([job]).get(job) or slurm_cli.JobState("?")).state == "RUNNING":
            subprocess.run(["scancel", job], check=True)
            cancelled = job
        time.sleep(0.5)
    assert cancelled, "the short run never started"
    out, err = launcher.communicate(timeout=400)
    assert launcher.returncode == 1, out + err
    rows = table(Namespace(stdout=out))
    assert rows["exps/short.yaml"].split()[0] == "FAILED"
    assert f"cancelled: Slurm job {cancelled} was cancelled" in rows["exps/short.yaml"]
    assert rows["exps/long.yaml"].split()[0] == "FAILED"
    assert "time limit (--time 1 min), Slurm job" in rows["exps/long.yaml"], rows["exps/long.yaml"]
    seconds = float(rows["exps/long.yaml"].split()[1].rstrip("s"))
    assert 60 <= seconds < 60 + 30  # it had its whole minute (not 90 s less), then a clean stop
    assert not list((tmp_path / "logs").glob("*.partial-*"))  # both dropped their staging directories
    assert finished_runs(tmp_path) == []

    again = slurm_launch(tmp_path, "-e", "exps/short.yaml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert finished_runs(tmp_path) == ["short"]


def test_slurm_no_wait_then_the_same_command_follows_the_jobs_and_submits_nothing_twice(cluster, tmp_path):
    for name in ("r1", "r2"):
        tiny_config(tmp_path / "exps" / f"{name}.yaml", tmp_path, name, training__pretrained=False)
    first = slurm_launch(tmp_path, "-e", "exps", "--no-wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 run(s) queued or running on Slurm; submitted now: 2 job(s)" in first.stdout
    logs = tmp_path / "run_logs" / "exps"
    submitted = {name: json.loads((logs / f"{name}.job").read_text())["job_id"] for name in ("r1", "r2")}

    second = slurm_launch(tmp_path, "-e", "exps")
    assert second.returncode == 0, second.stdout + second.stderr
    assert not re.search(r"^submitted \d", second.stderr, re.M), second.stderr  # nothing submitted again
    assert second.stderr.count("submitted earlier") == 2, second.stderr
    assert [row.split()[0] for row in table(second).values()] == ["ok", "ok"]
    # each run ran once, in the job submitted first, and its log was never reset
    assert {name: log_job(logs / f"{name}.log") for name in ("r1", "r2")} == submitted
    assert all("results: " in (logs / f"{name}.log").read_text() for name in ("r1", "r2"))
    assert len(list((tmp_path / "run_logs" / "_submitit").glob("*_submission.sh"))) == 1
    assert finished_runs(tmp_path) == ["r1", "r2"]


def test_slurm_requests_the_cluster_cannot_serve_are_refused_before_anything_is_written(cluster, tmp_path):
    tiny_config(tmp_path / "exps" / "a.yaml", tmp_path, "a")
    for args, message in [(["--gpus-per-run", "1"], "--gpus-per-run 1: partition debug has no GPU"),
                          (["--time", "100"], "--time 100: partition debug allows 60 min per job"),
                          (["--partition", "nope"], "--partition nope: no such Slurm partition"),
                          (["--cpus-per-run", "99"], "--cpus-per-run 99: the nodes of partition debug have at most")]:
        result = slurm_launch(tmp_path, "-e", "exps", *args)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {message}"), result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exps"]  # no run_logs, logs or ckpt


FAILING_SBATCH = """#!/bin/sh
# the real sbatch, except that it refuses every job that waits for another
if grep -q -- "--dependency" "$1"; then
    echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy" >&2
    exit 1
fi
exec {sbatch} "$@"
"""


def test_slurm_a_refused_submission_cancels_what_was_submitted_and_touches_no_log(cluster, tmp_path):
    tiny_config(tmp_path / "exps" / "a.yaml", tmp_path, "a", 10)
    tiny_config(tmp_path / "exps" / "b.yaml", tmp_path, "b", 11)
    touch(tmp_path / "run_logs" / "exps" / "a.log", "the log of an earlier attempt\n")
    bin_dir = tmp_path / "bin"
    touch(bin_dir / "sbatch", FAILING_SBATCH.format(sbatch=shutil.which("sbatch"))).chmod(0o755)
    result = slurm_launch(tmp_path, "-e", "exps", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    pretrain_job = re.search(r"submitted 1 job\(s\): (\d+)", result.stderr).group(1)
    assert error.startswith("error: sbatch refused a job array of 2 run(s): sbatch: error: Batch job submission "
                            "failed: Job violates accounting/QOS policy"), error
    assert error.endswith(f"the 1 job(s) submitted before it were cancelled ({pretrain_job})")
    state = queue([pretrain_job]).get(pretrain_job)
    assert state is None or state.state == "CANCELLED", state
    assert (tmp_path / "run_logs" / "exps" / "a.log").read_text() == "the log of an earlier attempt\n"
    assert not (tmp_path / "run_logs" / "exps" / "b.log").exists()
    assert not list((tmp_path / "run_logs").rglob("*.job"))


def test_slurm_arrays_are_cut_to_max_array_size_and_claimed_runs_are_skipped(cluster, tmp_path):
    n = cluster.max_array_size + 2
    for i in range(n):
        tiny_config(tmp_path / "exps" / f"r{i}.yaml", tmp_path, f"r{i}", training__pretrained=False)
    busy = read_config(ConfigFile(Path("exps/r0.yaml"), "exps/r0.yaml"), tmp_path).run_dir
    with claims.try_claim(busy, "run_exp.py, exps/r0.yaml"):  # another launcher computes r0 right now
        result = slurm_launch(tmp_path, "-e", "exps", "--no-wait")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"skipped  exps/r0.yaml: claimed by pid {os.getpid()} on " in result.stderr
        arrays = re.findall(r"submitted (\d+) job\(s\)", result.stderr)
        assert arrays == [str(cluster.max_array_size), "1"], result.stderr
    finally:
        jobs = [json.loads(p.read_text())["job_id"] for p in (tmp_path / "run_logs").rglob("*.job")]
        subprocess.run(["scancel", *jobs])
    assert len(jobs) == n - 1


def test_slurm_ctrl_c_cancels_the_jobs_the_launcher_submitted(cluster, tmp_path):
    tiny_config(tmp_path / "exps" / "a.yaml", tmp_path, "a", training__pretrained=False)
    launcher = subprocess.Popen([sys.executable, str(ROOT / "run_exp.py"), "--backend", "slurm", "--cpus-per-run",
                                 "1", "-e", "exps"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    record = tmp_path / "run_logs" / "exps" / "a.job"
    deadline = time.monotonic() + 120
    while not record.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    job = json.loads(record.read_text())["job_id"]
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, out + err
    assert f"cancelled (Slurm job {job})" in out and "interrupted" in out
    # scancel returns at once; the job passes through COMPLETING while Slurm tears it down
    state, deadline = queue([job]).get(job), time.monotonic() + 60
    while state is not None and state.state == "COMPLETING" and time.monotonic() < deadline:
        time.sleep(0.5)
        state = queue([job]).get(job)
    assert state is None or state.state == "CANCELLED", state
    assert not record.exists()

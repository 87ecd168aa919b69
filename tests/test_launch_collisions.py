"""Launchers that cannot collide: claims between launchers, children that die with theirs.

The scheduler with a fake experiment script first (fast), then the real launcher on tiny
mnist_5k runs: two launchers on one folder, and a launcher killed with SIGKILL.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from src import claims
from src.launch.local import LocalScheduler, make_slots
from src.launch.plan import OK, SKIPPED, build_jobs
from src.launch.report import ProgressDisplay
from test_run_exp import FAKE_EXPERIMENT, ROOT, finished_runs, info, launch, tiny_config, touch


def test_a_second_launcher_skips_a_claimed_run_and_waits_for_a_claimed_pretraining(tmp_path):
    script = touch(tmp_path / "fake_experiment.py", FAKE_EXPERIMENT)
    jobs = build_jobs([info(tmp_path, "b", "k-good"), info(tmp_path, "other", "k-good"), info(tmp_path, "crash")],
                      tmp_path / "run_logs")
    pretrain = jobs[0]
    # another launcher trains k-good and computes the run "crash" right now
    pretraining_elsewhere = claims.try_claim(pretrain.info.pretrain_model.parent, "run_exp.py, elsewhere")
    crash_elsewhere = claims.try_claim(tmp_path / "logs" / "crash", "run_exp.py, elsewhere")

    def other_launcher_finishes_its_pretraining():
        touch(pretrain.info.pretrain_model, "a model")
        pretraining_elsewhere.release()

    threading.Timer(1.5, other_launcher_finishes_its_pretraining).start()
    out = io.StringIO()
    scheduler = LocalScheduler(jobs, make_slots(0, 0, 2, cores=2), script, tmp_path,
                               ProgressDisplay(out, is_tty=False), poll_seconds=0.05)
    assert scheduler.run() is None
    crash_elsewhere.release()

    status = {job.name: (job.status, job.detail) for job in jobs}
    assert status["pretrain k-good"] == (OK, [str(pretrain.info.pretrain_model), "trained meanwhile by another process"])
    assert status["exps/b.yaml"][0] == OK and status["exps/other.yaml"][0] == OK
    assert status["exps/crash.yaml"][0] == SKIPPED
    assert status["exps/crash.yaml"][1][0].startswith(f"claimed by pid {os.getpid()} on ")
    assert "run_exp.py, elsewhere" in status["exps/crash.yaml"][1][0]
    # neither the pretraining nor the claimed run was started here, nor their logs touched
    assert not pretrain.log.exists() and not (tmp_path / "run_logs" / "exps" / "crash.log").exists()
    text = out.getvalue()
    assert "waiting  pretrain k-good: trained now by pid" in text and "skipped  exps/crash.yaml: claimed by" in text
    assert not (tmp_path / "logs" / ".claims").exists()  # every claim released


SLEEPER = """
import os, sys, time
config = sys.argv[sys.argv.index("--config") + 1]
(open(os.environ["PIDS"] + "/" + str(os.getpid()), "w")).write(config)
time.sleep(600)
"""

LAUNCHER = """
import io, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from src.launch.local import LocalScheduler, make_slots
from src.launch.plan import build_jobs, ConfigFile, ConfigInfo
tmp = Path(sys.argv[2])
infos = [ConfigInfo(ConfigFile(Path(f"{n}.yaml"), f"{n}.yaml"), run_id=n, run_dir=tmp / "logs" / n) for n in "abc"]
jobs = build_jobs(infos, tmp / "run_logs")
LocalScheduler(jobs, make_slots(0, 0, 2, cores=2), tmp / "sleeper.py", tmp, ProgressDisplay(sys.stderr)).run()
""".replace("ProgressDisplay(sys.stderr)", "__import__('src.launch.report', fromlist=['x']).ProgressDisplay(sys.stderr)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_children_die_with_a_launcher_killed_by_sigkill(tmp_path):
    touch(tmp_path / "sleeper.py", SLEEPER)
    (tmp_path / "pids").mkdir()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(ROOT), str(tmp_path)], cwd=tmp_path,
                                env={**os.environ, "PIDS": str(tmp_path / "pids")}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "pids").iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(p.name) for p in (tmp_path / "pids").iterdir()]
    assert len(children) == 2 and all(alive(pid) for pid in children)  # -j 2: two runs at once
    assert claims.holder(tmp_path / "logs" / "a") is not None
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "children outlived their launcher"
    assert claims.holder(tmp_path / "logs" / "a") is None  # their claims went with them


# ---------------------------------------------------------------------------------------
# The real launcher


def computed(run_logs: Path) -> list[str]:
    """The runs an experiment.py computed under these logs (it prints `results:` at the end)."""
    return sorted(log.stem for log in run_logs.rglob("*.log") if "results: " in log.read_text())


def test_two_launchers_on_one_folder_compute_every_run_once(tmp_path):
    for name in ("r1", "r2"):
        tiny_config(tmp_path / "exps" / f"{name}.yaml", tmp_path, name, training__pretrained=False)
    first = subprocess.Popen([sys.executable, str(ROOT / "run_exp.py"), "-e", "exps", "-n", "0", "-j", "1",
                              "--run-logs", "logs_first"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("logs/.claims/*.lock")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first launcher has claimed its first run
    second = launch(tmp_path, "-e", "exps", "-n", "0", "-j", "1", "--run-logs", "logs_second")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert finished_runs(tmp_path) == ["r1", "r2"]
    # every run computed by exactly one launcher, and the other said so
    assert sorted(computed(tmp_path / "logs_first") + computed(tmp_path / "logs_second")) == ["r1", "r2"]
    tables = out + second.stdout
    assert "claimed by pid" in tables and "run_exp.py, exps/r" in tables, tables


def test_a_launcher_killed_by_sigkill_leaves_no_orphan_and_a_rerun_finishes_once(tmp_path):
    tiny_config(tmp_path / "exps" / "k1.yaml", tmp_path, "k1", training__pretrained=False)
    launcher = subprocess.Popen([sys.executable, str(ROOT / "run_exp.py"), "-e", "exps", "-n", "0", "-j", "1"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "logs").glob("*.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the run is computing
    partials = list((tmp_path / "logs").glob("*.partial-*"))
    assert len(partials) == 1, "never saw the run computing"
    children = [int(p.name.rsplit("-", 1)[1]) for p in partials]
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children), "experiment.py outlived its launcher"
    assert not list((tmp_path / "logs").glob("*.partial-*"))  # SIGINT: they dropped their staging

    again = launch(tmp_path, "-e", "exps", "-n", "0", "-j", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()[1:-1]] == ["ok"]
    assert finished_runs(tmp_path) == ["k1"]
    assert computed(tmp_path / "run_logs") == ["k1"]

"""Claims on runs and the commit of a run directory, under real concurrency.

Other processes are real processes (a claim is a kernel lock: threads of one process
would share it); each is a few lines of Python that imports only src.claims or
src.tracking (no torch), so these tests take seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from src import claims
from src.errors import UserError
from src.tracking import RunDirectory

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                            **kwargs)


HOLD = """
import sys, time
from src import claims
claim = claims.try_claim(sys.argv[1], "a test holder")
print("held" if claim else "refused", flush=True)
time.sleep(600)
"""


def test_a_claim_is_exclusive_says_who_holds_it_and_dies_with_its_holder(tmp_path):
    run = tmp_path / "logs" / "run-1"
    holder = python(HOLD, run)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert claims.try_claim(run, "me") is None
        who = claims.holder(run)
        assert who.startswith(f"pid {holder.pid} on ") and "a test holder, since" in who
        holder.send_signal(signal.SIGKILL)  # no chance to clean up
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
    assert claims.holder(run) is None  # the kernel dropped the lock with the process
    with claims.try_claim(run, "me") as mine:
        assert mine is not None and "me, since" in claims.holder(run)
    assert not (tmp_path / "logs" / ".claims").exists()  # nothing left behind
    with claims.try_claim(tmp_path / "new" / "logs" / "run-1", "me"):
        assert (tmp_path / "new" / "logs" / ".claims").is_dir()
    assert not (tmp_path / "new").exists()  # not even the folders claiming made
    assert claims.holder(run) is None and not (tmp_path / "logs" / ".claims").exists()  # asking writes nothing


CREATE = """
import sys
from src.errors import UserError
from src.tracking import RunDirectory
try:
    RunDirectory(sys.argv[1], "run-1").create()
    print("created")
except UserError as e:
    print("refused:", e)
"""


def test_a_run_being_computed_is_refused_before_anything_is_computed(tmp_path):
    logs = tmp_path / "logs"
    mine = RunDirectory(logs, "run-1")
    mine.create()
    out = python(CREATE, logs).communicate(timeout=60)[0]
    assert out.startswith(f"refused: run run-1 is being computed by pid {os.getpid()} on ") and \
        "experiment.py" in out and "this one did not start" in out
    assert [p.name for p in logs.iterdir() if p.name.startswith("run-1.partial")] == [mine.staging.name]
    mine.abandon()
    assert python(CREATE, logs).communicate(timeout=60)[0] == "created\n"


def test_a_launcher_hands_its_claim_down_to_the_run(tmp_path):
    """What the local launcher does: claim, start experiment.py with the descriptor; the run
    adopts it instead of finding its own run taken."""
    logs = tmp_path / "logs"
    claim = claims.try_claim(logs / "run-1", "run_exp.py")
    child = python(CREATE, logs, env={claims.CLAIM_FD_ENV: str(claim.fileno())}, pass_fds=(claim.fileno(),))
    assert child.communicate(timeout=60)[0] == "created\n"
    stranger = python(CREATE, logs, env={claims.CLAIM_FD_ENV: "0"})  # a descriptor that is not the claim
    assert stranger.communicate(timeout=60)[0].startswith("refused: run run-1 is being computed by")
    claim.release()


def test_a_claimed_run_is_refused_in_process(tmp_path):
    with claims.try_claim(tmp_path / "logs" / "run-1", "someone"):
        with pytest.raises(UserError, match="being computed by pid .*someone"):
            RunDirectory(tmp_path / "logs", "run-1").create()


def race_worker(logs: Path, n: int, mode: str, barrier, results) -> None:
    """One of two processes that create the same n runs and commit them, in lockstep: each
    step starts in both at once (a barrier). File renames are slowed down by 2 ms, as on a
    network file system, which widens every window between two steps of a commit."""
    from src import tracking

    real_replace = os.replace

    def slow_replace(a, b):
        time.sleep(0.002)
        real_replace(a, b)

    os.replace = slow_replace
    if mode == "two renames":  # where renameat2 is missing (not Linux, some network file systems)
        tracking._renameat2 = None
    try:
        won = []
        for i in range(n):
            directory = RunDirectory(logs, f"run-{i}", claim=mode == "claims")
            barrier.wait()
            try:
                staging = directory.create()
            except UserError:  # the other one claimed it
                continue
            for part in ("a", "b", "c"):
                (staging / part).write_text(str(os.getpid()))
            won.append(directory)
        for directory in won:
            if mode != "claims":
                barrier.wait()
            directory.commit()
        results.put((os.getpid(), len(won)))
    except BaseException as e:
        results.put((os.getpid(), repr(e)))
        barrier.abort()
        raise


def race(tmp_path: Path, mode: str, n: int = 300) -> tuple[list, Counter]:
    import multiprocessing

    logs = tmp_path / "logs"
    logs.mkdir()
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2, timeout=60), context.Queue()
    procs = [context.Process(target=race_worker, args=(logs, n, mode, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    committed = dict(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(count, int) for count in committed.values()), committed  # no crash
    # one whole result per run, from exactly one process; no debris
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"run-{i}" for i in range(n))
    winners = Counter()
    for i in range(n):
        writers = {(logs / f"run-{i}" / part).read_text() for part in ("a", "b", "c")}
        assert len(writers) == 1 and (logs / f"run-{i}" / "ckpt").is_dir(), (i, writers)
        winners[int(writers.pop())] += 1
    assert set(winners) <= set(committed)
    return committed, winners


@pytest.mark.parametrize("mode", ["exchange", "two renames"])
def test_two_processes_committing_the_same_300_runs_leave_one_whole_result_each(tmp_path, mode):
    """Without claims (another version of the code, --force twice, a file system without
    locks between hosts) both compute every run and both commit it, at the same moment."""
    committed, winners = race(tmp_path, mode)
    assert list(committed.values()) == [300, 300]
    assert sum(winners.values()) == 300


def test_two_processes_claiming_the_same_300_runs_compute_each_once(tmp_path):
    committed, winners = race(tmp_path, "claims")
    assert sum(committed.values()) == 300  # every run claimed by exactly one of them
    assert winners == Counter({pid: count for pid, count in committed.items() if count})


def test_under_its_claim_a_run_removes_stale_staging_left_on_another_host(tmp_path):
    """A staging directory named after a pid that is alive here may come from a killed run
    on another host (shared logs): under the claim nobody else computes this run."""
    logs = tmp_path / "logs"
    elsewhere = touch_dir(logs / "run-1.partial-1")  # pid 1 is alive here, yet this is debris
    unclaimed = touch_dir(logs / "run-2.partial-1")
    RunDirectory(logs, "run-1").create()
    assert not elsewhere.exists()
    RunDirectory(logs, "run-2", claim=False).create()  # without a claim, a live pid's directory stays
    assert unclaimed.exists()


def touch_dir(path: Path) -> Path:
    (path / "ckpt").mkdir(parents=True)
    return path

"""Claims: "this run is mine", as a file lock that dies with its holder.

A claim on a directory `<parent>/<name>` (a run's result directory, a pretrained model's
cache entry) is an exclusive flock(2) on `<parent>/.claims/<name>.lock`. The kernel drops
the lock when the last descriptor of it closes, so a claim ends with its holder however
the holder ends (SIGKILL and power loss included): there is never a stale claim to clean
up, and no timeout to guess. The file itself says who holds it (pid, host, what), for the
message of whoever finds it taken.

A holder removes the file while it still holds the lock (and `.claims/` once empty); a
newcomer that opened the old file checks after locking that the path still names what it
locked, and starts again if not. Nothing is left behind when nothing runs, and two holders
never believe they own the same claim.

A claim can be handed to a child process: the launcher claims a run, starts experiment.py
with the descriptor inherited and its number in RUN_EXP_CLAIM_FD, and the run adopts it
(`adopt_or_claim`). The lock then lasts while either of them lives. stdlib only: the
launcher imports this without torch.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

CLAIM_FD_ENV = "RUN_EXP_CLAIM_FD"
SUBMITTING = "submitting it to Slurm"  # a holder that lets go within seconds: worth waiting for


def claim_path(directory: str | Path) -> Path:
    directory = Path(directory)
    return directory.parent / ".claims" / f"{directory.name}.lock"


class Claim:
    def __init__(self, path: Path, fd: int, owner: bool = True, made: tuple[Path, ...] = ()):
        self.path = path
        self.fd = fd
        self.owner = owner  # False for an adopted claim: its giver removes the file
        self.made = made    # folders above .claims/ that claiming created (a logs/ that did not exist)

    def fileno(self) -> int:
        return self.fd

    def release(self) -> None:
        if self.fd < 0:
            return
        if self.owner:
            try:
                os.unlink(self.path)  # still locked: nobody can hold the file we remove
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = -1
        if self.owner:
            for folder in (self.path.parent, *self.made):
                try:
                    folder.rmdir()  # the last claim gone: leave no .claims/ (nor a logs/ it made) behind
                except OSError:
                    break  # others are in it

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(directory: str | Path, what: str, wait_seconds: float | None = 0.0) -> Claim | None:
    """The claim on `directory`, or None if someone else holds it after waiting up to
    `wait_seconds` for them to let go (None: wait as long as it takes)."""
    path = claim_path(directory)
    made = tuple(folder for folder in Path(directory).parents if not folder.exists())  # deepest first
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # no .claims/ yet, or its last holder has just removed it
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _names_same_file(fd, path):
            _write_holder(fd, what)
            return Claim(path, fd, made=made)
        os.close(fd)  # its holder removed it on release after we opened it: lock the new one


def _names_same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_holder(fd: int, what: str) -> None:
    text = f"pid {os.getpid()} on {socket.gethostname()}: {what}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def holder(directory: str | Path) -> str | None:
    """Who holds the claim on `directory` ("pid 12 on host: what, since ..."), or None if
    nobody does. Writes nothing: a dry run may ask."""
    path = claim_path(directory)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # cannot even open it (permissions): assume it is free, the run will say
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 1000, 0).decode(errors="replace").strip()
            return text or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def adopt_or_claim(directory: str | Path, what: str, wait_seconds: float = 0.0) -> Claim | None:
    """The claim a launcher handed down (RUN_EXP_CLAIM_FD), if it is the claim on
    `directory`; otherwise our own, as try_claim."""
    inherited = os.environ.get(CLAIM_FD_ENV, "")
    if inherited.isdigit():
        fd = int(inherited)
        path = claim_path(directory)
        try:
            if _names_same_file(fd, path):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: succeeds at once
                os.set_inheritable(fd, False)
                return Claim(path, fd, owner=False)
        except OSError:
            pass  # not a descriptor of ours, or not that file: claim it ourselves
    return try_claim(directory, what, wait_seconds)

"""Checkpoints as ordinary state_dict files, and the content-addressed pretrained cache.

A checkpoint is `torch.save({"state_dict": ..., "meta": {...}})`, loaded with
`weights_only=True`: parameters only (D31), plus a record of how the model was trained,
which the DP-SGD certificate depends on. `training.pretrained: auto` looks the model up
in checkpoints/pretrained/<key>/ where the key hashes everything that determines it
(config.pretrained_key); a missing entry is trained once, under a file lock, even when
several processes ask for it at the same moment.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from src.errors import CheckpointError


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch}.pt"


def save_checkpoint(path: str | Path, state_dict: dict, meta: dict) -> None:
    import torch  # imported here: the launcher reads the cache layout without torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"state_dict": state_dict, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    import torch

    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: say which
        raise CheckpointError(f"cannot read checkpoint '{path}': {e}") from None
    if isinstance(data, dict) and "state_dict" in data:
        return data["state_dict"], dict(data.get("meta") or {})
    if isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data, {}  # a bare state_dict from elsewhere
    raise CheckpointError(f"'{path}' is not a state_dict checkpoint")


def resolve_pretrained_path(pretrained: str, epochs: int) -> Path:
    """A file, or a directory holding checkpoint_<epochs>.pt (the reference's logs/<id>/ckpt,
    restored at step = training.epochs)."""
    path = Path(pretrained)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / checkpoint_name(epochs)
        if candidate.is_file():
            return candidate
        found = sorted(p.name for p in path.glob("checkpoint_*.pt"))
        raise CheckpointError(
            f"training.pretrained: '{pretrained}' has no {checkpoint_name(epochs)} (the checkpoint of epoch "
            f"training.epochs = {epochs}); it holds {found or 'no checkpoints'}"
        )
    raise CheckpointError(
        f"training.pretrained: '{pretrained}' does not exist. Train it with a config that has "
        f"training.pretrained: false, or set training.pretrained: auto to train and cache it on first use"
    )


class PretrainedCache:
    def __init__(self, checkpoints_dir: str | Path):
        self.root = Path(checkpoints_dir) / "pretrained"

    def entry(self, key: str) -> Path:
        return self.root / key

    def model_path(self, key: str) -> Path:
        return self.entry(key) / "model.pt"

    def has(self, key: str) -> bool:
        return self.model_path(key).is_file()

    @contextmanager
    def lock(self, key: str):
        """Hold the entry's lock; the lock file is removed on release, so none is left
        beside the models. A waiter that wakes up on a file already removed (its inode no
        longer at the path) opens the path again instead of trusting a stale lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.lock"
        while True:
            handle = open(path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still holding it: the next holder re-checks the inode
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

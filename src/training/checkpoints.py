"""Checkpoints as ordinary state_dict files, and the content-addressed pretrained cache.

A checkpoint is `torch.save({"state_dict": ..., "meta": {...}})`, loaded with
`weights_only=True`: parameters only (D31), plus a record of how the model was trained,
which the DP-SGD certificate depends on. The record carries `content_sha256`, a hash of
the weights and of the rest of the record together, checked on load: a record moved onto
other weights, or edited, no longer matches. (A hash is no signature: whoever rewrites
both can forge them, which is why a certificate that rests on a record from elsewhere
says so.) `training.pretrained: auto` looks the model up
in checkpoints/pretrained/<key>/ where the key hashes everything that determines it
(config.pretrained_key); a missing entry is trained once, under a file lock, even when
several processes ask for it at the same moment.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

from src.errors import CheckpointError
from src.tracking import write_bytes_atomic


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch}.pt"


HASH_KEY = "content_sha256"


def content_hash(state_dict: dict, meta: dict) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes, in name order) and the record
    (canonical JSON, without the hash itself)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    record = {k: v for k, v in meta.items() if k != HASH_KEY}
    digest.update(json.dumps(record, sort_keys=True, separators=(",", ":"), default=repr).encode())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state_dict: dict, meta: dict) -> None:
    import torch  # imported here: the launcher reads the cache layout without torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory and written by us: torch.save into a full disk raises an opaque
    # RuntimeError ("unexpected pos"), a plain write raises OSError ENOSPC with the path.
    meta = {**meta, HASH_KEY: content_hash(state_dict, meta)}
    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "meta": meta}, buffer)
    write_bytes_atomic(path, buffer.getvalue())  # a failed save (disk full) leaves nothing behind


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, record) of a checkpoint; CheckpointError saying what is wrong with the
    file. A record with a content hash is checked against the weights; a mismatch is
    refused. A record without one (older files, bare state_dicts) comes back without
    HASH_KEY, and whatever rests on it must not trust it."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint '{path}': {e.strerror}") from None
    if size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes), e.g. from an interrupted copy; "
                              "replace it or train the model again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes say nothing about the file
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: say which and how
        raise CheckpointError(_unreadable(path, size, e)) from None
    state, meta = data, {}
    if isinstance(data, dict) and "state_dict" in data:
        state, meta = data["state_dict"], data.get("meta") or {}
    if not (isinstance(state, dict) and state and isinstance(meta, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise CheckpointError(f"'{path}' does not hold a state_dict (a mapping of parameter names to tensors, "
                              "as torch.save(model.state_dict()) writes)")
    if HASH_KEY in meta and meta[HASH_KEY] != content_hash(state, meta):
        raise CheckpointError(
            f"checkpoint '{path}': its record of how the model was trained does not match its weights (content "
            "hash mismatch): the file was modified after it was written. Retrain it, or restore the original")
    return dict(state), dict(meta)


def _unreadable(path: Path, size: int, error: Exception) -> str:
    if not zipfile.is_zipfile(path):
        return (f"checkpoint '{path}' ({size} bytes) is not a complete PyTorch file: torch.save writes a zip "
                "archive and this is none, so it is truncated (an interrupted save or copy) or another format")
    if "Weights only load failed" in str(error):
        return (f"checkpoint '{path}' holds Python objects besides tensors and plain values; it is refused because "
                "unpickling them could run code. Save only the weights: torch.save({'state_dict': "
                "model.state_dict()}, path)")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"checkpoint '{path}' ({size} bytes) is damaged: {first[:200]}"


def require_finite_weights(state: dict, path: str | Path, remedy: str = "train it again") -> None:
    """A model with NaN or infinite weights is a diverged one: never a starting point."""
    import torch

    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"checkpoint '{path}' holds a diverged model: parameter '{name}' has {bad} of "
                                  f"{tensor.numel()} values NaN or infinite; {remedy}")


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

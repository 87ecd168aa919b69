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
import json
import os
from contextlib import contextmanager
from pathlib import Path

from src.errors import CheckpointError


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    meta = {**meta, HASH_KEY: content_hash(state_dict, meta)}
    torch.save({"state_dict": state_dict, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, record). A record with a content hash is checked against the weights;
    a mismatch is refused. A record without one (older files, bare state_dicts) comes back
    without HASH_KEY, and whatever rests on it must not trust it."""
    import torch

    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: say which
        raise CheckpointError(f"cannot read checkpoint '{path}': {e}") from None
    if isinstance(data, dict) and "state_dict" in data:
        state, meta = data["state_dict"], dict(data.get("meta") or {})
        if HASH_KEY in meta and meta[HASH_KEY] != content_hash(state, meta):
            raise CheckpointError(
                f"checkpoint '{path}': its record of how the model was trained does not match its weights (content "
                "hash mismatch): the file was modified after it was written. Retrain it, or restore the original")
        return state, meta
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
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

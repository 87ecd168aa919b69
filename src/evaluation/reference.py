"""The retrain run a run is compared with: same dataset and model, same validation and forget
sets (a fingerprint of their indices), found among the finished runs of `logs_dir`, the one
with the same global_seed when there is one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from src.tracking import member_summaries


def forget_set_fingerprint(dataset: str, indices) -> str:
    """A hash of what defines the comparison: the dataset and its val / forget index sets."""
    digest = hashlib.sha256(dataset.encode())
    for name in ("val", "forget"):
        digest.update(name.encode())
        digest.update(indices.__getattribute__(name).cpu().numpy().astype("int64").tobytes())
    return digest.hexdigest()[:16]


def identity(config, fingerprint: str) -> dict:
    return {"fingerprint": fingerprint, "model": config.model.name, "algorithm": config.unlearning.algorithm,
            "global_seed": config.global_seed}


def _summaries(logs_dir: Path):
    for path in sorted(Path(logs_dir).glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a run being written, or a broken one: never a reference
        if isinstance(summary, dict) and summary.get("finished"):
            yield from member_summaries(summary)  # an ensemble's members are runs too


def find_reference(logs_dir, me: dict, algorithm: str) -> dict | None:
    """The summary of a finished `algorithm` run whose evaluation identity matches `me`
    (fingerprint and model); the same global_seed preferred, then the lowest run id."""
    found = []
    for summary in _summaries(logs_dir):
        other = (summary.get("evaluation") or {}).get("identity") or {}
        if (other.get("algorithm") == algorithm and other.get("fingerprint") == me["fingerprint"]
                and other.get("model") == me["model"]):
            found.append((other.get("global_seed") != me["global_seed"], summary.get("run_id", ""), summary))
    return min(found, key=lambda item: item[:2])[2] if found else None

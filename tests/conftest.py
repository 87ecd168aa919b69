"""Shared pytest configuration and fixtures.

Experiments in tests run on the bundled real MNIST digits (mnist_5k) with tiny budgets;
pretrained models are cached once per test session in a shared temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src import catalogue  # noqa: F401  (fills the registries, as every entry point does)

REPO = Path(__file__).resolve().parents[1]
# The reference's 442 experiment files, committed as test data (provenance: tests/data/README.md).
UPSTREAM_CONFIGS = REPO / "tests" / "data" / "upstream_configs"
QUICKSTART = REPO / "configs" / "quickstart_mnist5k.yaml"


@pytest.fixture(scope="session")
def session_checkpoints(tmp_path_factory) -> Path:
    """One pretrained-model cache for the whole session: tiny recipes are trained once."""
    return tmp_path_factory.mktemp("checkpoints")


def set_dotted(data: dict, dotted: str, value) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


@pytest.fixture
def make_config(tmp_path, session_checkpoints):
    """A tiny mnist_5k experiment as a dict (quick-start + overrides), written to a YAML file.

    Returns (path, data). Budgets are small so a run takes a few seconds.
    """

    def make(name: str = "tiny", overrides: dict | None = None, directory: Path | None = None):
        data = yaml.safe_load(QUICKSTART.read_text())
        base = {"training.epochs": 3, "unlearning.epochs": 2, "logs_dir": str(tmp_path / "logs"),
                "checkpoints_dir": str(session_checkpoints), "name": name}
        for key, value in {**base, **(overrides or {})}.items():
            set_dotted(data, key, value)
        path = (directory or tmp_path) / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path, data

    return make


def run_cli(*args, cwd=REPO, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run a repository script with this interpreter, capturing its output."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None removes a variable
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def run_main(*args) -> int:
    """experiment.py's main() in this process (no interpreter start-up, no torch import)."""
    import experiment

    return experiment.main([str(a) for a in args])

"""Bad input and filesystem faults end in one clear line, exit 2, never a traceback, and
everything that can be refused is refused before anything is written."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, run_main


def written(tmp_path) -> list[str]:
    """What a refused run left in tmp_path besides its config."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.suffix != ".yaml")


# -- the config -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("dataset.seed", 2**70, "dataset.seed: got 1180591620717411303424; Input should be less than or equal to"),
    ("dataset.seed", 2**64, "dataset.seed: got 18446744073709551616"),
    ("global_seed", -1, "global_seed: got -1; Input should be greater than or equal to 0"),
    ("name", "n" * 300, "must be at most 100 bytes long"),
    ("logs_dir", "", "logs_dir: got ''; must name a directory"),
    ("checkpoints_dir", " ", "checkpoints_dir: got ' '; must name a directory"),
])
def test_values_that_would_fail_mid_run_are_refused_at_validation(make_config, tmp_path, capsys, key, value, expected):
    path, _ = make_config("v", {key: value})
    assert run_main("--config", path) == 2
    assert expected in capsys.readouterr().err
    assert written(tmp_path) == []


def test_a_model_made_for_another_dataset_is_refused_at_validation(make_config, capsys):
    path, _ = make_config("cifarnet", {"model.name": "tiny_net_cifar"})
    assert run_main("--config", path, "--dry-run") == 2
    err = capsys.readouterr().err
    assert "model.name: 'tiny_net_cifar' is made for inputs of shape [32, 32, 3]" in err
    assert "[28, 28, 1]" in err and "tiny_net" in err


def test_an_empty_split_is_refused_before_anything_is_written(make_config, tmp_path, capsys):
    path, _ = make_config("empty", {"dataset.forget_split": 0.0001})
    assert run_main("--config", path) == 2
    assert "leave the forget set empty (of 4000 training examples: val 400, forget 0" in capsys.readouterr().err
    assert written(tmp_path) == []


def test_a_missing_pretrained_file_is_refused_before_logs_or_data_exist(make_config, tmp_path, capsys):
    # MNIST is not on disk: a run that started would create data/ to download it.
    path, _ = make_config("missing", {"training.pretrained": str(tmp_path / "nope" / "ckpt"), "dataset.name": "mnist",
                                      "dataset.root": str(tmp_path / "data")})
    assert run_main("--config", path) == 2
    assert "does not exist" in capsys.readouterr().err
    assert written(tmp_path) == []
    # --dry-run prints the plan, then fails the same way.
    assert run_main("--config", path, "--dry-run") == 2
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["pretrained_exists"] is False and "does not exist" in err
    assert written(tmp_path) == []


# -- output folders -------------------------------------------------------------------------------------

def bad_folder(tmp_path, where: str) -> str:
    (tmp_path / "afile").write_text("x")
    return {"file": str(tmp_path / "afile"), "under a file": str(tmp_path / "afile" / "sub"),
            "under /proc": "/proc/certified-unlearning-test/logs",
            "not writable": "/sys/certified-unlearning-test"}[where]


WHERE = ("file", "under a file", "under /proc", "not writable")
EXPECTED = {"file": "exists and is not a directory", "under a file": "which is not a directory",
            "under /proc": "cannot be written: no files can be created in /proc",
            "not writable": "cannot be written: no files can be created in /sys"}


@pytest.mark.parametrize("key", ["logs_dir", "checkpoints_dir"])
@pytest.mark.parametrize("where", WHERE)
def test_output_folders_that_cannot_be_written_are_refused_first(make_config, tmp_path, capsys, key, where):
    path, _ = make_config("out", {key: bad_folder(tmp_path, where)})
    assert run_main("--config", path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}: ") and EXPECTED[where] in err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("where", WHERE)
def test_launcher_and_figures_refuse_output_folders_too(make_config, tmp_path, capsys, where):
    folder = bad_folder(tmp_path, where)
    make_config("a", directory=tmp_path / "exps")
    result = run_cli("run_exp.py", "-e", tmp_path / "exps", "-n", "0", "--run-logs", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --run-logs: ") and EXPECTED[where] in result.stderr
    assert not (tmp_path / "logs").exists()

    from src.figures.__main__ import main as figures

    (tmp_path / "logs").mkdir()
    assert figures(["--figure", "1", "--logs", str(tmp_path / "logs"), "--out", folder]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: ") and EXPECTED[where] in err


@contextmanager
def small_disk(path: Path, kib: int):
    """A real full disk at `path`: a tmpfs of `kib` KiB where we may mount one (root),
    otherwise a per-file size limit of `kib` KiB on this process while the block runs
    (RLIMIT_FSIZE: the kernel's own EFBIG; Python ignores SIGXFSZ)."""
    path.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True).returncode == 0
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        if not mounted:
            resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, hard))
        yield
    finally:
        if mounted:  # lazily: a file a failed run left open must not keep the mount
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".partial-" in p.name or ".tmp-" in p.name]


def test_a_full_disk_under_logs_is_one_line_and_leaves_nothing_half_written(make_config, tmp_path, capsys):
    disk = tmp_path / "disk"
    path, _ = make_config("full", {"logs_dir": str(disk / "logs"), "training.pretrained": False,
                                   "training.epochs": 1})
    with small_disk(disk, 24):
        assert run_main("--config", path, "--quiet") == 2
        err = capsys.readouterr().err
        assert "No space left on device" in err or "File too large" in err, err
        assert str(disk / "logs") in err and "nothing of this run was kept" in err
        assert leftovers(disk) == [] and not (disk / "logs").exists()


def test_a_full_disk_under_the_pretrained_cache_caches_nothing(make_config, tmp_path, capsys):
    disk = tmp_path / "disk"
    path, _ = make_config("fullcache", {"checkpoints_dir": str(disk / "ck"), "training.epochs": 1})
    with small_disk(disk, 16):
        assert run_main("--config", path, "--quiet") == 2
        err = capsys.readouterr().err
        # the first file the entry gets after training: the learning events, then the model
        assert ("model.pt" in err or "learning_events.npz" in err) and (
            "No space left on device" in err or "File too large" in err), err
        assert leftovers(disk) == [] and not [p for p in (disk / "ck" / "pretrained").iterdir() if p.is_dir()]
        assert not (tmp_path / "logs").exists()


def test_wandb_online_without_an_api_key_is_refused_first(make_config, tmp_path, monkeypatch, capsys):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    path, _ = make_config("online", {"wandb.mode": "online", "wandb.log_dir": str(tmp_path / "wandb")})
    assert run_main("--config", path) == 2
    assert "wandb.mode: 'online' needs a W&B API key" in capsys.readouterr().err
    assert written(tmp_path) == []
    # With a key in ~/.netrc (what `wandb login` writes) the check passes.
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    from src.preflight import check_wandb
    from src.config import load_config

    check_wandb(load_config(path))


# -- checkpoints ----------------------------------------------------------------------------------------

class Payload:
    """An object of a class, pickled by reference: what a weights-only load refuses."""


def model_bytes(tmp_path) -> bytes:
    from src.models.model import ModelFactory

    torch.save({"state_dict": ModelFactory.create_model("tiny_net", 10, (28, 28, 1)).state_dict(), "meta": {}},
               tmp_path / "good.pt")
    return (tmp_path / "good.pt").read_bytes()


@pytest.mark.parametrize("kind, expected", [
    ("empty", "is empty (0 bytes)"),
    ("truncated", "is not a complete PyTorch file"),
    ("random", "is not a complete PyTorch file"),
    ("objects", "unpickling them could run code"),
    ("foreign", "does not hold a state_dict"),
    ("shape", "does not fit model.name 'tiny_net'"),
])
def test_broken_checkpoints_say_what_is_wrong(make_config, tmp_path, capsys, kind, expected):
    bad = tmp_path / "ckpts" / "bad.pt"
    bad.parent.mkdir()
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        data = model_bytes(tmp_path)
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        bad.write_bytes(os.urandom(4096))
    elif kind == "objects":
        torch.save({"state_dict": {"w": Payload()}}, bad)
    elif kind == "foreign":
        torch.save({"state_dict": {"w": [1, 2, 3]}}, bad)
    else:
        torch.save({"state_dict": {"layers.0.weight": torch.zeros(3, 3)}}, bad)
    path, _ = make_config("ck", {"training.pretrained": str(bad)})
    assert run_main("--config", path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint '{bad}'") or err.startswith(f"error: '{bad}'"), err
    assert expected in err and "weights_only" not in err
    assert not (tmp_path / "logs").exists()

"""Checks made before a run writes anything: where it will write, what it will read.

A run that is refused after `logs/`, `data/` or a cache entry exists leaves debris and,
worse, may have spent the compute first. Everything that can be known up front is
checked here: output folders (a file, under a file, under /proc, read-only), the
pretrained checkpoint a config names (there, readable, finite, the model's shape), and
the wandb credentials an online run needs. No torch at import: the launcher and the
figures use `check_output_dir`.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from src.config_yaml import cut
from src.errors import CheckpointError, ConfigError, UserError


def check_output_dir(path: str | Path, what: str) -> None:
    """Refuse an output folder that cannot be created or written, naming `what` (a config
    key or an option). Probes the nearest existing folder with a temporary file."""
    text = str(path)
    if not text.strip() or "\0" in text:
        raise UserError(f"{what}: {cut(repr(text))} does not name a directory")
    target = Path(os.path.abspath(text))
    existing = target
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        where = "exists and is not a directory" if existing == target else \
            f"is under {existing}, which is not a directory"
        raise UserError(f"{what}: '{cut(text, 300)}' {where}; choose another {what}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"{what}: '{cut(text, 300)}' cannot be written: no files can be created in "
                        f"{cut(str(existing), 300)} ({reason}); choose another {what}") from None


# ---------------------------------------------------------------------------------------
# wandb


def _wandb_credentials() -> bool:
    """Whether wandb would find an API key without prompting (wandb login's order)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    config_dir = Path(os.environ.get("WANDB_CONFIG_DIR", Path.home() / ".config" / "wandb"))
    for settings in (config_dir / "settings", Path("wandb") / "settings"):
        try:
            if any(line.split("=")[0].strip() == "api_key" for line in settings.read_text().splitlines()):
                return True
        except (OSError, UnicodeDecodeError):
            pass
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    candidates = [Path(os.environ["NETRC"]).expanduser()] if os.environ.get("NETRC") else \
        [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in candidates:
        try:
            if netrc.netrc(path).authenticators(host):
                return True
        except (OSError, netrc.NetrcParseError):
            pass
    return False


def check_wandb(config) -> None:
    mode = config.wandb.mode
    if mode == "disabled" or os.environ.get("WANDB_MODE") in ("disabled", "offline", "dryrun"):
        return
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"wandb.mode: '{mode}' needs the wandb package: pip install wandb==0.31.0")
    if mode == "online" and not _wandb_credentials():
        raise ConfigError("wandb.mode: 'online' needs a W&B API key and none was found (WANDB_API_KEY, "
                          "`wandb login`); log in, or use wandb.mode: offline and `wandb sync` later")
    check_output_dir(config.wandb.log_dir, "wandb.log_dir")


# ---------------------------------------------------------------------------------------
# The pretrained model a config names


def check_pretrained(config, plan) -> None:
    """An explicit checkpoint, or a cached `auto` one, must load, be finite and fit the model."""
    from src.training.checkpoints import (PretrainedCache, load_checkpoint, require_finite_weights,
                                          resolve_pretrained_path)
    from src.config import pretrained_key

    pretrained = config.training.pretrained
    if pretrained is False:
        return
    if pretrained == "auto":
        cache = PretrainedCache(config.checkpoints_dir)
        key = pretrained_key(config)
        if not cache.has(key):
            return  # trained on first use
        path, remedy = cache.model_path(key), f"delete {cache.entry(key)} to train it again"
    else:
        path, remedy = resolve_pretrained_path(pretrained, config.training.epochs), "retrain it"
    state, _ = load_checkpoint(path)
    require_finite_weights(state, path, remedy)
    _require_shapes(config, plan, state, path)


def _require_shapes(config, plan, state: dict, path) -> None:
    from src.models.model import ModelFactory

    module = ModelFactory.create_model(config.model.name, config.model.n_classes, plan.input_shape)
    # parameters and persistent buffers (BatchNorm statistics): what FlatModel saves
    wanted = {name: tuple(p.shape) for name, p in module.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in state.items()}
    if wanted != given:
        missing = sorted(set(wanted) - set(given))
        unexpected = sorted(set(given) - set(wanted))
        shapes = [f"{n}: {given[n]} (model: {wanted[n]})" for n in wanted if n in given and given[n] != wanted[n]]
        detail = "; ".join(filter(None, [missing and f"missing {missing}", unexpected and f"unexpected {unexpected}",
                                         shapes and f"shapes {', '.join(shapes)}"]))
        raise CheckpointError(f"checkpoint '{path}' does not fit model.name '{config.model.name}' on "
                              f"{list(plan.input_shape)} inputs: {detail}")


# ---------------------------------------------------------------------------------------


def check_before_writing(config, plan, *, run: bool = True) -> None:
    """Everything experiment.py can refuse before it writes: for a run (`run`), or for a
    `--pretrain-only` job, which writes only the cache."""
    if run:
        check_output_dir(config.logs_dir, "logs_dir")
    if config.training.pretrained == "auto":
        check_output_dir(config.checkpoints_dir, "checkpoints_dir")
    if not plan.data_present:
        check_output_dir(config.dataset.root, "dataset.root")  # the download goes there
    check_pretrained(config, plan)
    if run:
        check_wandb(config)

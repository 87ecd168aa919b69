"""One config per method of a folder, for the tightness table.

Configs that differ only in their seeds (dataset.seed, global_seed, members `seeds`) and name
are the same method; the first of each group (by file name) is audited, among those matching
--match. Methods whose noise is drawn in pretraining (DP-SGD) are left out (audit.check_auditable).
"""

from __future__ import annotations

from pathlib import Path

from src.audit.audit import auditable
from src.config import load_config, stable_hash
from src.errors import UserError

# Keys that say which seed or where, not which method. `seeds` (members per run) too: the
# audit ignores it (it runs its own chains, __main__.audited_member).
_NOT_METHOD = ("name", "global_seed", "seeds", "logs_dir", "checkpoints_dir", "wandb", "device")


def method_key(config) -> str:
    data = config.to_dict()
    for key in _NOT_METHOD:
        data.pop(key, None)
    data["dataset"].pop("seed", None)
    return stable_hash(data)


def _chains_run_as_certified(config) -> bool:
    """Left out too: the convex methods' configs whose chains the audit cannot run as
    certified (convex.check_chain_audit: D2D's sequence without a secret state, the
    original's clipped Langevin chain)."""
    from src.audit.convex import audited_as_chains, check_chain_audit
    from src.runner import make_plan

    if not audited_as_chains(config):
        return True

    plan = make_plan(config)  # an invalid config is an error, not a config to leave out
    try:
        check_chain_audit(config, plan)
    except UserError:
        return False
    return True


def folder_configs(folder, overrides=(), match=()) -> list[tuple[Path, object]]:
    """`match`: file-name patterns (fnmatch); a config is audited if its name matches one."""
    from fnmatch import fnmatch

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--folder: '{folder}' is not a directory")
    paths = sorted(root.rglob("*.yaml"))
    if not paths:
        raise UserError(f"--folder: '{folder}' holds no .yaml configs")
    if match:
        paths = [p for p in paths if any(fnmatch(p.name, pattern) for pattern in match)]
        if not paths:
            raise UserError(f"--match: no config of '{folder}' matches {list(match)}")
    chosen, seen = [], set()
    for path in paths:
        config = load_config(path, overrides)
        if not auditable(config) or not _chains_run_as_certified(config):
            continue
        key = method_key(config)
        if key not in seen:
            seen.add(key)
            chosen.append((path, config))
    if not chosen:  # an empty table with status 0 would read as "audited, nothing wrong"
        raise UserError(f"--folder: none of the {len(paths)} configs in '{folder}' can be audited (methods whose "
                        "noise is drawn in pretraining, such as dp-sgd, are left out)")
    return chosen

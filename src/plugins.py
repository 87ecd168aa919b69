"""Things a config names from the user's own code: `package.module:attr` or `file.py:attr`.

A spec is an import path (`my_package.models:make_net`, found on sys.path like any import)
or a file path (`my_models.py:make_net`, `../lib/nets.py:make_net`), resolved relative to
the directory of the config file that names it, so a config and the code beside it move
together. Resolving imports the module (a file once per process, under a name of its own)
and returns the attribute; every failure is a ConfigError naming the key, the spec and
what was expected. No torch here: the schema resolves specs while it validates.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from src.config_yaml import cut
from src.errors import ConfigError


def is_spec(text: str) -> bool:
    """`target:attr` with both parts present (a built-in name has no colon)."""
    target, sep, attr = str(text).rpartition(":")
    return bool(sep and target.strip() and attr.strip())


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def anchor_path(path: str | Path, base_dir: str | Path | None) -> str:
    """`path` made absolute against `base_dir` (the config's directory), or the working
    directory when None."""
    path = Path(path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return str(path.resolve(strict=False))


def anchor(spec: str, base_dir: str | Path | None) -> str:
    """The spec with a relative file path made absolute against `base_dir`; import paths
    are returned as they are."""
    target, _, attr = spec.rpartition(":")
    if not _is_file(target):
        return spec
    return f"{anchor_path(target, base_dir)}:{attr}"


def resolve(spec: str, *, key: str, base_dir: str | Path | None = None):
    """The object `spec` names; ConfigError (naming `key`) when it cannot be found or imported."""
    if not is_spec(spec):
        raise ConfigError(f"{key}: {cut(repr(spec))} is not 'file.py:name' or 'package.module:name'")
    target, _, attr = anchor(spec, base_dir).rpartition(":")
    module = _load_file(target, key, spec) if _is_file(target) else _import(target, key, spec)
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ConfigError(f"{key}: {cut(repr(spec))}: {target} has no attribute '{attr}' "
                          f"(it defines: {', '.join(public) or 'nothing callable'})")
    return getattr(module, attr)


def source_digest(spec: str, base_dir: str | Path | None = None) -> str:
    """sha256 (12 hex digits) of the source file a spec names, so that run ids and cached
    models change when the user's code does, wherever the files live."""
    target, _, _ = anchor(spec, base_dir).rpartition(":")
    if _is_file(target):
        return content_digest(target)
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not Path(found.origin).is_file():
        return "unknown"
    return content_digest(found.origin)


def content_digest(path: str | Path) -> str:
    """sha256 (12 hex digits) of a file's bytes, or of a folder's files (relative names and
    bytes, in sorted order); "missing" when there is nothing there."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    if not files:
        return "missing"
    for file in files:
        if file is not path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        try:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return "unreadable"
    return digest.hexdigest()[:12]


def label(spec: str) -> str:
    """A short, file-name-safe name for a spec (`my_models.make_net`), for cache keys."""
    target, _, attr = spec.rpartition(":")
    stem = Path(target).stem if _is_file(target) else target
    text = f"{stem}.{attr}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]


def _import(target: str, key: str, spec: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{key}: {cut(repr(spec))}: no module named '{e.name}' (an import path is looked up on "
                          "sys.path; for a file beside the config write 'file.py:name')") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise ConfigError(f"{key}: {cut(repr(spec))}: importing {target} failed: {type(e).__name__}: "
                          f"{cut(str(e), 200)}") from e


def _load_file(target: str, key: str, spec: str):
    path = Path(target)
    if not path.is_file():
        raise ConfigError(f"{key}: {cut(repr(spec))}: file {path} not found (a file path is relative to the "
                          "config file's directory)")
    # One module per file and process, under a name no import can collide with.
    name = f"_user_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"{key}: {cut(repr(spec))}: {path} cannot be imported as Python source")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file failed while importing
        del sys.modules[name]
        raise ConfigError(f"{key}: {cut(repr(spec))}: importing {path} failed: {type(e).__name__}: "
                          f"{cut(str(e), 200)}") from e
    return module

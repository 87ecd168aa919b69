"""Plug-ins: a class or function of the user's own code, named in a config as

    path/to/file.py:attribute      a file, relative to the config file's directory
    package.module:attribute       an importable module (on sys.path / PYTHONPATH)

The registries (src/registry.py) accept these where a built-in name would go. Every way
this can fail (no such file, a module that raises on import, no such attribute) is a
one-line ConfigError naming the key, the value and what was expected. A file is loaded
once per process, under a private module name, so its classes keep their identity.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from src.errors import ConfigError

FORMS = "path/to/file.py:attribute (relative to the config file's directory) or package.module:attribute"
_files: dict[str, object] = {}


def is_spec(value) -> bool:
    """Whether a config value names a plug-in rather than a built-in (built-in names have no ':')."""
    return isinstance(value, str) and ":" in value


def _split(spec: str, key: str) -> tuple[str, str]:
    target, _, attribute = spec.rpartition(":")
    if not target.strip() or not attribute.strip():
        raise ConfigError(f"{key}: {spec!r} names no {'attribute' if target.strip() else 'file or module'}; "
                          f"expected {FORMS}")
    return target.strip(), attribute.strip()


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or target.startswith(("~", "."))


def canonical(spec: str, *, base_dir: Path | None) -> str:
    """The spec with a file path made absolute (against `base_dir`), so that it means the same
    file wherever it is read again (a run directory's config.yaml, the launcher)."""
    target, sep, attribute = spec.rpartition(":")
    if not sep or not _is_file(target.strip()):
        return spec
    path = Path(target.strip()).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or ".") / path
    return f"{path.resolve()}:{attribute.strip()}"


def resolve(spec: str, *, key: str, base_dir: Path | None) -> object:
    """The object `spec` names; `key` is the config key it came from (for messages)."""
    target, attribute = _split(spec, key)
    if _is_file(target):
        module, where = _load_file(canonical(spec, base_dir=base_dir).rpartition(":")[0], spec, key), target
    else:
        module, where = _import(target, spec, key), f"module {target}"
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            defined = sorted(n for n, v in vars(module).items()
                             if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
            shown = ", ".join(defined[:12]) + (", ..." if len(defined) > 12 else "")
            raise ConfigError(f"{key}: {spec!r}: {where} has no attribute '{attribute}' (it defines: "
                              f"{shown or 'nothing public'})")
        obj = getattr(obj, part)
    return obj


def source_digest(spec: str) -> str:
    """A digest of the bytes of the file a (canonical, resolved) spec names: part of a run's
    identity, so that editing the user's file gives new run ids."""
    target = spec.rpartition(":")[0]
    if _is_file(target):
        path = Path(target)
    else:
        path = Path(getattr(sys.modules.get(target) or importlib.import_module(target), "__file__", None) or "")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _load_file(path: str, spec: str, key: str):
    if path in _files:
        return _files[path]
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{key}: {spec!r}: the file {file} does not exist; expected {FORMS}")
    if file.suffix != ".py":
        raise ConfigError(f"{key}: {spec!r}: {file} is not a Python file (.py); expected {FORMS}")
    name = f"_plugin_{hashlib.sha256(path.encode()).hexdigest()[:12]}_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError(f"{key}: {spec!r}: importing {file} failed{_line_in(e, path)}: {_one_line(e)}") from None
    _files[path] = module
    return module


def _import(target: str, spec: str, key: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and (target == e.name or target.startswith(e.name + ".")):
            raise ConfigError(f"{key}: {spec!r}: no module named '{e.name}' (is its folder on PYTHONPATH?); "
                              f"expected {FORMS}") from None
        raise ConfigError(f"{key}: {spec!r}: importing {target} failed: {_one_line(e)}") from None
    except Exception as e:
        raise ConfigError(f"{key}: {spec!r}: importing {target} failed: {_one_line(e)}") from None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def _line_in(error: BaseException, path: str) -> str:
    """' (line N)' of the user's file where the error was raised, when it is known."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f" (line {error.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    return f" (line {lines[-1]})" if lines else ""


# -- the user's files by what they hold (run ids, cached models) -------------------------


def anchor_path(path: str | Path, base_dir: Path | None) -> str:
    """A data path made absolute against `base_dir` (the config's directory), or the working
    directory when None."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or ".") / path
    return str(path.resolve())


def label(spec: str) -> str:
    """A short, file-name-safe name for a spec (`my_models.make_net`), for cache keys."""
    target, _, attribute = spec.rpartition(":")
    stem = Path(target).stem if _is_file(target.strip()) else target.strip()
    text = f"{stem}.{attribute.strip()}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]


def source_digest(spec: str, base_dir: Path | None = None) -> str:
    """sha256 (12 hex digits) of the source file a spec names, so that run ids and cached
    models change when the user's code does, wherever the files live."""
    target = canonical(spec, base_dir=base_dir).rpartition(":")[0].strip()
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

"""The registries: the names a config may give (`unlearning.algorithm`, `training.algorithm`,
`dataset.forget.memorization.source`) and the classes or functions behind them.

A registry sits below everything that reads it and imports none of what it holds: it is
filled by src/catalogue.py, which sits above both the registry and the methods, and which
every entry point imports before reading a config. Reading an empty registry is a bug
(the catalogue was not imported), not a user error, and says so.

A registry whose `adopt` is set also accepts a plug-in, `path/to/file.py:Class` or
`package.module:Class` (src/plugins.py): the class must implement the registry's interface
and goes through `adopt` (for unlearning: src/unlearning/outside.py, which makes it
empirical) before anyone uses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable

from src import plugins
from src.errors import ConfigError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class Registry:
    def __init__(self, key: str):
        self.key = key  # the config key whose values this registry resolves
        self._entries: dict[str, object] = {}
        self.interface: type | None = None
        self.adopt: Callable[[type], type] | None = None
        self._adopted: dict[str, type] = {}

    def fill(self, entries: Iterable, *, names: Iterable[str] | None = None, interface: type | None = None,
             adopt: Callable[[type], type] | None = None) -> None:
        """Register `entries` under `names` (default: each entry's `name`). With `interface`,
        every entry must implement it; `adopt` turns an outside class into one we run."""
        entries = list(entries)
        names = list(names) if names is not None else [entry.name for entry in entries]
        for name, entry in zip(names, entries, strict=True):
            if interface is not None and not (isinstance(entry, type) and issubclass(entry, interface)):
                raise TypeError(f"{self.key}: {entry!r} does not implement {interface.__name__}")
            if name in self._entries and self._entries[name] is not entry:
                raise TypeError(f"{self.key}: '{name}' registered twice")
            self._entries[name] = entry
        self.interface, self.adopt = interface or self.interface, adopt or self.adopt

    def builtins(self) -> dict[str, object]:
        """Name -> entry for everything the repository itself provides."""
        if not self._entries:
            raise RuntimeError(f"the registry of {self.key} is empty: import src.catalogue first (every entry point "
                               "does; it fills the registries)")
        return dict(self._entries)

    def is_builtin(self, entry) -> bool:
        return any(entry is known for known in self.builtins().values())

    def get(self, value: str, base_dir: Path | None = None):
        """The entry a config value names: a built-in name, or (where plug-ins are accepted)
        a `file.py:Class` / `module:Class` spec, file paths relative to `base_dir`."""
        known = self.builtins()
        if value in known:
            return known[value]
        if self.adopt is not None and plugins.is_spec(value):
            return self._outside(value, base_dir)
        extra = " or an outside class as path/to/file.py:Class or package.module:Class" if self.adopt else ""
        raise ConfigError(f"{self.key}: '{value}' is unknown; known: {', '.join(sorted(known))}{extra}")

    def _outside(self, spec: str, base_dir: Path | None):
        canonical = plugins.canonical(spec, base_dir=base_dir)
        if canonical not in self._adopted:
            cls = plugins.resolve(canonical, key=self.key, base_dir=base_dir)
            self._check_outside(spec, cls)
            adopted = self.adopt(cls)
            adopted.spec = canonical  # what the config holds from now on (a file path made absolute)
            self._adopted[canonical] = adopted
        return self._adopted[canonical]

    def _check_outside(self, spec: str, cls) -> None:
        where = f"{self.key}: '{spec}'"
        if not (isinstance(cls, type) and issubclass(cls, self.interface)):
            what = f"a {type(cls).__name__}" if not isinstance(cls, type) else f"the class {cls.__name__}"
            raise ConfigError(f"{where} is {what}, not a class implementing {self.interface.__module__}."
                              f"{self.interface.__name__} (docs/methods.md)")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: the class needs a `name`, letters, digits, _ or - (the key of its config "
                              f"section), got {name!r}")
        if name in self.builtins():
            raise ConfigError(f"{where}: its name '{name}' is a built-in method's; choose another")


# The registries of this repository (filled by src/catalogue.py).
UNLEARNING_ALGORITHMS = Registry("unlearning.algorithm")
TRAINING_ALGORITHMS = Registry("training.algorithm")
MEMORIZATION_ESTIMATORS = Registry("dataset.forget.memorization.source")

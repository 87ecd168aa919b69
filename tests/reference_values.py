"""Numbers computed by the reference implementation (tests/data/reference_values.json).

Tests reproduce them; see that file's "description" for what each quantity means.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

VALUES_PATH = Path(__file__).resolve().parent / "data" / "reference_values.json"


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple[dict, ...]:
    return tuple(json.loads(VALUES_PATH.read_text())["cases"])


def reference_cases(quantity: str | None = None) -> list[dict]:
    """All reference cases, or those whose "quantity" equals ``quantity``."""
    cases = [case for case in _all_cases() if quantity is None or case["quantity"] == quantity]
    if quantity is not None and not cases:
        raise KeyError(f"no reference case has quantity={quantity!r}")
    return cases


def case_id(case: dict) -> str:
    """A short, readable pytest id for a case."""
    config = (case.get("config") or "").rsplit("/", 1)[-1].replace("_config.yaml", "")
    variant = case.get("variant") or ""
    inputs = "-".join(f"{key}={value}" for key, value in case["inputs"].items() if not isinstance(value, str))
    return "|".join(part for part in (config, variant) if part) or inputs

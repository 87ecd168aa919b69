"""What every figure CLI does around its drawing: a user error or a failed write (disk full,
permissions) is one line on stderr and exit status 2 (the traceback only with --debug),
and each file written is named."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable

from src.errors import UserError


def run_figure(make: Callable[[], Iterable[Path]], debug: bool) -> int:
    try:
        paths = list(make())
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if debug or err.filename is None:
            raise
        print(f"error: {err.strerror}: {err.filename}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0

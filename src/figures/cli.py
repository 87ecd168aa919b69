"""What every figure CLI does around its drawing: the options they share (where the run logs
are, where the files go), and a user error or a failed write (disk full, permissions) is one
line on stderr and exit status 2 (the traceback only with --debug), and each file written is
named."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable

from src.errors import UserError

LOGS_HELP = "directory of run directories (default: logs)"
FOLDER_HELP = "only runs launched from configs under this folder (summary.json's config_file)"


def add_log_arguments(parser, folder_default: str | None = None, folder_help: str = FOLDER_HELP) -> None:
    """--logs and --folder: which finished runs a figure reads."""
    parser.add_argument("--logs", default="logs", help=LOGS_HELP)
    parser.add_argument("--folder", default=folder_default, help=folder_help)


def add_output_arguments(parser) -> None:
    """--out, --prefix and --debug: where the files go, and tracebacks on request."""
    parser.add_argument("--out", default="figures", help="output directory (default: figures)")
    parser.add_argument("--prefix", default="", help="prefix of the output file names")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def report_left_out(dropped: dict, shown=lambda reason: True) -> None:
    """Why runs were left out of a figure, on stderr: {reason: count}, those `shown` keeps."""
    for reason, count in sorted(dropped.items()):
        if count and shown(reason):
            print(f"  left out {count} run(s): {reason}", file=sys.stderr)


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

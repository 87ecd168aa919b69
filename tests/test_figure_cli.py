"""Every figure CLI reports a user error or a failed write in one line (src/figures/cli.py)."""

from __future__ import annotations

import errno

import pytest

from src.errors import UserError
from src.figures.cli import run_figure
from src.figures.langevin import main as langevin_main
from src.figures.langevin_modes import main as langevin_modes_main
from src.figures.request_stream import main as request_stream_main


def _raise(exc):
    def make():
        raise exc
    return make


def test_written_files_are_named(tmp_path, capsys):
    assert run_figure(lambda: [tmp_path / "a.png", tmp_path / "a.csv"], debug=False) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {tmp_path / 'a.png'}", f"wrote {tmp_path / 'a.csv'}"]


def test_a_full_disk_is_one_line_naming_the_file(capsys):
    full = OSError(errno.ENOSPC, "No space left on device", "/out/fig.png")
    assert run_figure(_raise(full), debug=False) == 2
    assert capsys.readouterr().err == "error: No space left on device: /out/fig.png\n"
    with pytest.raises(OSError):
        run_figure(_raise(full), debug=True)


def test_an_os_error_without_a_file_is_not_hidden():
    with pytest.raises(OSError):
        run_figure(_raise(OSError(errno.EIO, "I/O error")), debug=False)


def test_a_user_error_is_one_line(capsys):
    assert run_figure(_raise(UserError("no runs in logs")), debug=False) == 2
    assert capsys.readouterr().err == "error: no runs in logs\n"


@pytest.mark.parametrize("main", [langevin_main, langevin_modes_main, request_stream_main])
def test_the_stream_and_langevin_figures_refuse_empty_logs_in_one_line(main, tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    assert main(["--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err

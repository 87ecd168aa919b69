"""A second signal during a run's cleanup must not leave its staging directory behind
(scancel sends SIGTERM to every process of a job, and the job body then sends its run SIGINT)."""

from __future__ import annotations

import os
import signal

import pytest

from src.interrupts import deferred_interrupts
from tests.conftest import run_main


def test_a_signal_inside_the_block_waits_for_its_end():
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_inside_an_except_block_the_exception_on_its_way_out_stays_the_one_raised():
    with pytest.raises(ValueError):
        try:
            raise ValueError("the run failed")
        except ValueError:
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
            raise


def test_a_second_interrupt_during_cleanup_leaves_no_staging_directory(make_config, tmp_path, monkeypatch, capsys):
    from src.tracking import RunLogger
    from src.training.trainer import Trainer

    path, _ = make_config("twice", {"training.pretrained": False, "training.epochs": 1})

    def first_signal(self):
        raise KeyboardInterrupt  # as the handler of scancel's SIGTERM does

    close = RunLogger.close

    def close_then_second_signal(self):
        close(self)
        os.kill(os.getpid(), signal.SIGINT)  # the job body's SIGINT, while the run cleans up

    monkeypatch.setattr(Trainer, "unlearn", first_signal)
    monkeypatch.setattr(RunLogger, "close", close_then_second_signal)
    assert run_main("--config", path, "--quiet") == 130
    assert "nothing of this run was kept" in capsys.readouterr().err
    logs = tmp_path / "logs"
    assert not logs.exists() or [p.name for p in logs.iterdir() if p.name != ".claims"] == []

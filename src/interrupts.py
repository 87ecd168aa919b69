"""Cleanup that a second Ctrl-C or SIGTERM cannot cut short.

A run that is stopped gets more than one signal: `scancel` sends SIGTERM to every process
of the job, and the job body, stopped too, sends its run SIGINT (src/launch/command.py);
a user presses Ctrl-C twice. The first signal starts the cleanup (closing the logs,
dropping the staging directory); a second one used to raise inside it, and a
`logs/<run>.partial-<pid>` directory was left behind. Within `deferred_interrupts()`
SIGINT and SIGTERM are only noted; when the block ends the handlers are restored, and a
signal noted there is raised as KeyboardInterrupt unless an exception is already on its
way out (the run is ending anyway).

Python runs signal handlers in the main thread only, so outside it nothing is deferred
(and nothing needs to be: no handler can interrupt that thread).
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class deferred_interrupts:
    def __enter__(self):
        self.noted: list[int] = []
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.noted.append(signum)

    def __exit__(self, kind, value, traceback) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        # inside an `except` block the exception being handled is on its way out already
        if self.noted and kind is None and sys.exc_info()[0] is None:
            raise KeyboardInterrupt
        return False

"""Stopping on SIGINT (Ctrl-C), SIGTERM (a service manager) and SIGHUP (a closed terminal)
alike, always through the code that cleans up.

A command that starts processes or writes temporary data must never be killed by a signal's
default action half-way: its children would be adopted by PID 1 and keep running, its data
folder would stay.  So inside ``with StopSignals() as stop:`` the three signals only *record*
the request; the command's main thread looks at it at safe points (``stop.check()`` raises
``Stopped``, ``stop.wait()`` sleeps until it comes) and its ``finally`` blocks run in full.
A second signal during the clean-up is recorded too, never an interruption of it.

Nothing is raised from inside a signal handler: an exception landing between a fork and the
line that records the child would leak that child.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """A stop signal came; ``exit_code`` is the shell's convention for it (128 + number)."""

    def __init__(self, signum: int):
        super().__init__("stopped by %s" % signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Records SIGINT, SIGTERM and SIGHUP while active (main thread only; elsewhere the
    handlers stay as they are and only ``request()`` stops)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def request(self) -> None:
        """Stop without a signal (the output went away, a child died)."""
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        """Raise ``Stopped`` if a signal came (a ``request()`` without one is left to the
        caller, who knows why it asked)."""
        if self.signum is not None:
            raise Stopped(self.signum)

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is requested or ``timeout`` passes; True if requested."""
        return self.event.wait(timeout)

    def wait_until_stopped(self, poll: Callable[[], None] | None = None,
                           interval: float = 0.5) -> None:
        """Block until a stop is requested; ``poll`` runs every ``interval`` meanwhile and
        may raise to end the wait with an error."""
        while not self.event.wait(interval):
            if poll is not None:
                poll()

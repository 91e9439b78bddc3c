"""Waiting until the person at the shell (or a service manager) says stop."""

from __future__ import annotations

import signal
import threading
from typing import Callable


def wait_for_signal(stop: threading.Event, poll: Callable[[], None] | None = None,
                    interval: float = 0.5) -> None:
    """Block until Ctrl-C or SIGTERM (or ``stop`` is set elsewhere); ``poll`` runs meanwhile
    and may raise to end the wait with an error."""
    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(interval):
            if poll is not None:
                poll()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

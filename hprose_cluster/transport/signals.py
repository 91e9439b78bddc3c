"""SIGINT and SIGTERM for a server serving in the main thread (a blocking ``start()``).

Both stop the server gracefully.  Python runs signal handlers in the main thread between
bytecodes, interrupting whatever it was doing, so a handler must not take locks, join threads
or log: the server's handler records the signal and wakes its accept loop, which then stops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

__all__ = ["STOP_SIGNALS", "stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call ``handler(signum, frame)``; the handlers
    there before are put back after.  Outside the main thread (where Python allows no signal
    handler) nothing changes."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            try:
                previous[signum] = signal.signal(signum, handler)
            except (ValueError, OSError):  # not the main interpreter, or not supported
                pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)

"""The count of requests in flight, and shutting connections down: what a protocol handler
calls around each request, and what ``Serving`` (``serving.py``, which derives from
``InFlight``) reads when it drains.

Two ways to count a request.  ``request_started``/``request_finished`` take the lock: for a
request executed on a worker (a full-duplex TCP or WebSocket request).  ``begin_here``/
``end_here`` take none: for a request executed on its connection's own thread (half-duplex
TCP, an inline full-duplex one, HTTP), which alone writes ``conn.here``; the lock-free
handshake with ``shut_if_idle`` and stop() is described at ``begin_here``.  (It relies on the
GIL: one bytecode at a time, each store seen by the next load in any thread.)
"""

from __future__ import annotations

import threading

from .connection import Connection, State
from .streams import shutdown_socket

__all__ = ["InFlight"]

_STOPPING = State.STOPPING


class InFlight:
    """The lifecycle's state, its lock and its connections, and the requests in flight."""

    def __init__(self) -> None:
        self._state = State.NEW
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: set[Connection] = set()
        self._in_flight = 0  # requests counted under the lock; ``here`` ones are not in it

    # --- read-only views ------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def stopping(self) -> bool:
        """True once the drain delay is over and the server no longer accepts: handlers close
        connections after their reply.  (While ``DRAINING`` they serve as usual.)"""
        return self._state is State.STOPPING or self._state is State.STOPPED

    @property
    def in_flight(self) -> int:
        """Requests being executed (from ``request_started`` to ``request_finished``, or
        ``begin_here`` to ``end_here``)."""
        with self._lock:
            return self._in_flight + self._here_count()

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    # --- what protocol handlers call ------------------------------------------------------

    def request_started(self, conn: Connection) -> bool:
        """A complete request arrived on ``conn``; False means drop it unexecuted (``conn``
        was shut down by stop(), so no reply could be sent)."""
        with self._lock:
            if conn.shut:
                return False
            conn.busy += 1
            self._in_flight += 1
            return True

    def request_finished(self, conn: Connection) -> None:
        """The request's reply is written (or failed to be); pairs with ``request_started``."""
        with self._lock:
            conn.busy -= 1
            conn.served += 1
            self._in_flight -= 1
            if self._state is _STOPPING:
                self._changed.notify_all()

    def begin_here(self, conn: Connection) -> bool:
        """``request_started`` for a request executed on ``conn``'s own thread (the only
        one that may call this), without the lock: the small call's hot path.

        ``conn.here`` is stored before ``conn.shut`` is read; ``shut_if_idle`` stores
        ``shut`` before it reads ``here``.  Every step is one bytecode under the GIL, so at
        least one side sees the other's store: the request is dropped, or the connection is
        left open for it (or both: the connection ends, the request not executed).  And
        stop() counts ``here`` among the requests in flight.
        """
        conn.here = True
        if conn.shut:
            conn.here = False
            return False
        return True

    def end_here(self, conn: Connection) -> None:
        """The reply of a ``begin_here`` request is written (or failed to be)."""
        conn.here = False
        conn.served_here += 1
        if self._state is _STOPPING:  # read after the store: stop() counts after its own
            with self._lock:
                self._changed.notify_all()

    def keep_open(self, conn: Connection) -> bool:
        """Whether ``conn`` may wait for another request: not once it was shut down, nor,
        while stopping, once it has answered a request (a new connection may still bring its
        first request until stop() shuts it)."""
        return not conn.shut and not ((conn.served or conn.served_here) and self.stopping)

    def shut(self, conn: Connection) -> None:
        """Shut ``conn`` down (the thread blocked on it wakes; its owner closes it)."""
        with self._lock:
            conn.shut = True
        shutdown_socket(conn.sock)

    def shut_if_idle(self, conn: Connection) -> None:
        with self._lock:
            conn.shut = True  # before reading ``here`` (see begin_here)
            if conn.busy or conn.here:
                conn.shut = False
                return
        shutdown_socket(conn.sock)

    def _here_count(self) -> int:
        """(Under the lock.)  Requests executed on their connection's own thread now."""
        return sum(1 for conn in self._connections if conn.here)

"""The half-duplex connection pool: at most ``size`` connections, one call on each at a time.

A socket belongs to the call that holds it: only that call's thread closes it (``release`` or
``discard``).  ``close()`` closes the idle ones and only *shuts down* the busy ones (their
calls fail at once and close them): closing a descriptor under another thread makes that
thread fail with ``EBADF`` mid-call.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

from ...deadline import Deadline
from ...errors import CallTimeout
from ..streams import close_quietly, shutdown_socket

__all__ = ["ConnectionPool"]


class ConnectionPool:
    def __init__(self, url: str, size: int, connect: Callable[[Deadline], socket.socket],
                 is_stale: Callable[[socket.socket], bool]):
        self.url = url
        self.size = size
        self._connect = connect
        self._is_stale = is_stale
        self._cond = threading.Condition()
        self._idle: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._connecting = 0

    @property
    def open_count(self) -> int:
        """Connections open now (idle and in use)."""
        return len(self._open)

    def acquire(self, deadline: Deadline) -> socket.socket:
        """A connection for one call: an idle one, a new one, or the next one released."""
        stale: list[socket.socket] = []
        try:
            with self._cond:
                while True:
                    while self._idle:
                        sock = self._idle.pop()
                        if self._is_stale(sock):
                            self._open.discard(sock)
                            stale.append(sock)
                            continue
                        return sock
                    if len(self._open) + self._connecting < self.size:
                        self._connecting += 1
                        break
                    remaining = deadline.remaining()
                    if remaining is not None and remaining <= 0:
                        raise CallTimeout(
                            "hprose TCP call to %s timed out after %s waiting for a free "
                            "connection (pool of %d)" % (self.url, deadline.describe(),
                                                         self.size),
                            url=self.url, sent=False)
                    self._cond.wait(remaining)
        finally:
            for sock in stale:
                close_quietly(sock)
        try:
            sock = self._connect(deadline)
        except BaseException:
            with self._cond:
                self._connecting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._connecting -= 1
            self._open.add(sock)
        return sock

    def release(self, sock: socket.socket) -> None:
        """The call on ``sock`` succeeded: keep it for the next call."""
        with self._cond:
            if sock in self._open:  # else close() ran meanwhile
                self._idle.append(sock)
                self._cond.notify()
                return
        close_quietly(sock)

    def discard(self, sock: socket.socket) -> None:
        """The call on ``sock`` failed: close it (only its own call's thread does)."""
        with self._cond:
            self._open.discard(sock)
            self._cond.notify()
        close_quietly(sock)

    def close(self) -> None:
        """Close the idle connections; shut down the busy ones (their calls close them)."""
        with self._cond:
            idle, busy = self._idle, self._open.difference(self._idle)
            self._idle = []
            self._open = set()
            self._cond.notify_all()
        for sock in idle:
            close_quietly(sock)
        for sock in busy:
            shutdown_socket(sock)

"""The half-duplex connection pool: at most ``size`` connections, one call on each at a time.

Fair: callers that must wait are served in arrival order.  A released connection is handed
straight to the longest waiter, never put back for whoever asks next -- otherwise the thread
that just released it (it holds the GIL and the pool lock) takes it again at once, and with
more callers than connections some threads starve (per-thread counts 1,742 to 2,879 and a
p99 of 36 ms with 8 threads on 2 connections, before).  A caller also never takes an idle
connection ahead of a waiter.

A socket belongs to the call that holds it: only that call's thread closes it (``release`` or
``discard``).  ``close()`` closes the idle ones and only *shuts down* the busy ones (their
calls fail at once and close them): closing a descriptor under another thread makes that
thread fail with ``EBADF`` mid-call.  ``retire()`` is the gentle close: idle connections now,
busy ones when their calls end, and none kept afterwards.

An idle connection used less than ``check_after`` seconds ago is handed out without the
staleness check (a ``poll``): a call that finds it closed by the server after all learns so
from the reset its request meets (see ``TcpTransport``) and goes on a new connection.

``TcpTransport.call`` does the uncontended cases of ``acquire`` and ``release`` inline, under
the same lock (an idle connection taken while nobody waits; one put back while nobody waits
and the pool is not retired): two method calls less per call.  Change them together.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Callable

from ...deadline import Deadline
from ...errors import CallTimeout
from ..streams import close_quietly, shutdown_socket

__all__ = ["ConnectionPool"]

_clock = time.monotonic


class _Waiter:
    """One caller waiting for a connection: released (``ready``) with either a socket handed
    over or the right to open a new connection (``sock`` None)."""

    __slots__ = ("ready", "sock")

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.sock: socket.socket | None = None


class ConnectionPool:
    def __init__(self, url: str, size: int, connect: Callable[[Deadline], socket.socket],
                 is_stale: Callable[[socket.socket], bool], check_after: float = 0.0):
        self.url = url
        self.size = size
        self._connect = connect
        self._is_stale = is_stale
        self._check_after = check_after
        self._lock = threading.Lock()
        self._idle: list[tuple[socket.socket, float]] = []  # (socket, when it was released)
        self._open: set[socket.socket] = set()
        self._connecting = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._retired = False

    @property
    def open_count(self) -> int:
        """Connections open now (idle and in use)."""
        return len(self._open)

    def acquire(self, deadline: Deadline) -> socket.socket:
        """A connection for one call: an idle one, a new one, or the next one released."""
        waiter: _Waiter | None
        while True:
            with self._lock:
                if self._waiters:
                    waiter = _Waiter()
                    self._waiters.append(waiter)
                    break
                if not self._idle:
                    if len(self._open) + self._connecting < self.size:
                        self._connecting += 1
                        waiter = None
                    else:
                        waiter = _Waiter()
                        self._waiters.append(waiter)
                    break
                sock, since = self._idle.pop()
            # the staleness check (a poll) runs outside the lock: the socket is ours now
            if _clock() - since < self._check_after or not self._is_stale(sock):
                return sock
            self.discard(sock)
        if waiter is not None:
            handed = self._wait(waiter, deadline)
            if handed is not None:
                return handed
        return self._open_new(deadline)  # this caller holds a connecting slot

    def _wait(self, waiter: _Waiter, deadline: Deadline) -> socket.socket | None:
        """Wait for a socket (returned) or a connecting slot (None); CallTimeout unsent."""
        remaining = deadline.remaining()
        if not waiter.ready.acquire(timeout=-1 if remaining is None else remaining):
            with self._lock:
                try:
                    self._waiters.remove(waiter)
                    timed_out = True
                except ValueError:  # served just now: take what it was given
                    timed_out = False
            if timed_out:
                raise CallTimeout("hprose TCP call to %s timed out after %s waiting for a "
                                  "free connection (pool of %d)"
                                  % (self.url, deadline.describe(), self.size),
                                  url=self.url, sent=False)
            waiter.ready.acquire()
        return waiter.sock

    def _open_new(self, deadline: Deadline) -> socket.socket:
        try:
            sock = self._connect(deadline)
        except BaseException:
            with self._lock:
                self._connecting -= 1
                self._pass_slot()
            raise
        with self._lock:
            self._connecting -= 1
            self._open.add(sock)
        return sock

    def _pass_slot(self) -> None:
        """A connection slot came free (under the lock): the first waiter may open one."""
        if self._waiters and len(self._open) + self._connecting < self.size:
            waiter = self._waiters.popleft()
            self._connecting += 1
            waiter.ready.release()

    def release(self, sock: socket.socket) -> None:
        """The call on ``sock`` succeeded: hand it to the first waiter, else keep it idle
        (a retired pool closes it instead)."""
        with self._lock:
            if sock in self._open:
                if not self._retired:
                    if self._waiters:
                        waiter = self._waiters.popleft()
                        waiter.sock = sock
                        waiter.ready.release()
                    else:
                        self._idle.append((sock, _clock()))
                    return
                self._open.discard(sock)  # retired: its slot frees for a waiting call
                self._pass_slot()
        close_quietly(sock)

    def discard(self, sock: socket.socket) -> None:
        """The call on ``sock`` failed: close it (only its own call's thread does)."""
        with self._lock:
            self._open.discard(sock)
            self._pass_slot()
        close_quietly(sock)

    def retire(self) -> None:
        """Close the idle connections now and the busy ones as their calls end; calls that
        still come (they chose this server before it left the view) get a connection of
        their own, closed after them."""
        with self._lock:
            self._retired = True
            idle = [sock for sock, _ in self._idle]
            self._idle = []
            self._open.difference_update(idle)
        for sock in idle:
            close_quietly(sock)

    def close(self) -> None:
        """Close the idle connections; shut down the busy ones (their calls close them).
        Waiting calls may then open new connections."""
        with self._lock:
            idle = [sock for sock, _ in self._idle]
            busy = self._open.difference(idle)
            self._idle = []
            self._open = set()
            while self._waiters and self._connecting < self.size:
                self._pass_slot()
        for sock in idle:
            close_quietly(sock)
        for sock in busy:
            shutdown_socket(sock)

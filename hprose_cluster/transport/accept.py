"""Accepting connections: a listening socket, the loop that accepts on it, and the self-pipe
that wakes the loop.

The loop sleeps in ``select`` on the listener and on one end of a socket pair; ``wake()``
writes a byte to the other end, which is all ``stop()`` needs to make the loop look at the
server's state again, and all a signal handler may do (no locks, no logging).  ``Acceptor``
has no policy of its own: the serving lifecycle says whether to go on (``keep_going``, asked
before each wait, without locks), whether to accept what is pending (``accepting``) and what
an accepted socket becomes (``on_accept``).

At most one loop runs at a time.  A caller ``claim()``s the loop first, then runs it in its
own thread (``run()``) or on a new one (``start_thread()``); the loop's end is decided under
the same lock, so whoever claims next knows whether a loop still runs -- a ``stop()`` that
must keep accepting during its drain delay starts one only if none does.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from typing import Any, Callable

__all__ = ["Acceptor"]


class Acceptor:
    """Accepts on ``sock`` (a listening, non-blocking socket) and hands each connected
    socket, blocking and with ``TCP_NODELAY`` for TCP, to ``on_accept(sock, peer)``.
    ``name()`` names the server in log lines."""

    def __init__(self, sock: socket.socket, *, name: Callable[[], str], log: logging.Logger,
                 keep_going: Callable[[], bool], accepting: Callable[[], bool],
                 on_accept: Callable[[socket.socket, Any], None]):
        self.sock = sock
        self._name = name
        self.log = log
        self._keep_going = keep_going
        self._accepting = accepting
        self._on_accept = on_accept
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()
        self._running = False  # a loop runs, or is claimed to (under _lock)
        self._closed = False
        self._idle = threading.Event()  # set while no loop runs
        self._idle.set()
        self._threads: list[threading.Thread] = []  # made by start_thread()

    # --- the loop -------------------------------------------------------------------------

    def claim(self) -> bool:
        """Reserve the loop for the caller, who then runs it; False if one runs already."""
        with self._lock:
            if self._running or self._closed:
                return False
            self._running = True
            self._idle.clear()
            return True

    def unclaim(self) -> None:
        """Give back a claim without running the loop."""
        self._ended()

    def run(self) -> None:
        """Accept in the calling thread (after ``claim()``) until ``keep_going()`` is False."""
        selector = selectors.DefaultSelector()
        released = False  # by _go_on: a new claim may be under way, leave it alone
        try:
            if self._closed:
                return
            selector.register(self.sock, selectors.EVENT_READ, self.sock)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while True:
                if not self._go_on():
                    released = True
                    return
                for key, _ in selector.select(timeout=1.0):
                    if key.data is None:
                        self._drain_wakes()
                    elif self._accepting():
                        self._accept()
        finally:
            selector.close()
            if not released:  # closed, or an exception ended the loop
                self._ended()

    def start_thread(self, name: str) -> None:
        """Run the claimed loop on a new daemon thread called ``name``."""
        thread = threading.Thread(target=self.run, daemon=True, name=name)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the loop to end, and for the threads it ran on
        to end too (the loop says it is over a moment before its thread returns, and a
        stopped server must leave no thread behind); True once none runs."""
        deadline = time.monotonic() + timeout
        if not self._idle.wait(timeout):
            return False
        with self._lock:
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(t.is_alive() for t in threads if t is not current)

    def wake(self) -> None:
        """Make the loop ask ``keep_going`` now (safe in a signal handler)."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (already woken) or closed (already stopped)

    def close(self) -> None:
        """Close the listener and the self-pipe (connections not accepted yet are reset)."""
        with self._lock:
            self._closed = True
        for sock in (self.sock, self._wake_r, self._wake_w):
            sock.close()

    # --- inside -----------------------------------------------------------------------------

    def _go_on(self) -> bool:
        with self._lock:
            if self._keep_going():
                return True
            self._running = False
        self._idle.set()
        return False

    def _ended(self) -> None:
        with self._lock:
            self._running = False
        self._idle.set()

    def _drain_wakes(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        try:
            sock, peer = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # e.g. EMFILE: back off instead of spinning
            if self._accepting():
                self.log.warning("accept on %s failed: %s", self._name(), error)
                time.sleep(0.05)
            return
        sock.setblocking(True)
        if sock.family != getattr(socket, "AF_UNIX", None):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._on_accept(sock, peer)

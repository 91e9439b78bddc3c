"""Full-duplex requests executed on their connection's own thread, without holding up the
requests behind them.

Handing a request to a worker costs two thread crossings (and their system calls) per call;
with one calling thread on the other side that is most of what full duplex costs over half
duplex.  So a full-duplex request that finds nothing else of its connection running or
waiting is executed right on the connection's thread (``TcpProtocol.answer``).  But then
nobody reads that connection while it runs, and a slow request would hold up the calls
pipelined behind it, which full duplex exists to avoid.  So one watchdog thread per server
looks, every ``TICK``, at the connections that execute requests inline; for a request that
has run a whole tick it starts a *helper* on the worker pool, which reads the connection
meanwhile and hands what comes to the workers (a half-duplex frame it answers itself, in
order).  When the inline request ends, reading goes back to the connection's thread.  A slow
request thus delays the ones behind it by at most about a tick.

What a fast request costs is two stores and a clock reading, no lock: the connection's
thread sets ``inline_since`` before executing and clears it after; only when a helper is
reading (``helped``) does it then wait for that read to end (``read_lock``).  The helper
reads only under ``read_lock`` and only while ``inline_since`` is set, so the two never read
at the same time.  A connection is put in the watchdog's set by its first inline request
(``watch``), and taken out after ``IDLE`` seconds in which the watchdog never saw one running
(the next one puts it back) or when it ends; the watchdog ends when its set is empty, and
with the server.  Taking a connection out and its thread starting a request can cross: the
watchdog clears ``watched`` and then looks at ``inline_since``, the connection's thread sets
``inline_since`` and then looks at ``watched``; at least one of them sees the other's store
(every step is one bytecode under the GIL), and the connection stays watched.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import TYPE_CHECKING

from .. import framing, streams

if TYPE_CHECKING:
    from .protocol import TcpConnectionState, TcpProtocol

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["InlineRunner", "TICK"]

TICK = 0.005
"""How long a full-duplex request runs on its connection's thread before a helper reads that
connection in its place."""

IDLE = 1.0
"""A connection leaves the watchdog's set after this long without a request seen running
inline; the watchdog ends when no connection is left."""

_IDLE_TICKS = int(IDLE / TICK)
_clock = time.monotonic
_POLL_INPUT = select.POLLIN | select.POLLERR | select.POLLHUP


class InlineRunner:
    """The watchdog over one server's inline full-duplex requests (see the module)."""

    def __init__(self, kind: str):
        self.kind = kind  # for the watchdog's thread name
        self.protocol: TcpProtocol  # set by the protocol's owner
        self._watched: set[TcpConnectionState] = set()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    # --- on the connection's thread -------------------------------------------------------

    def watch(self, state: TcpConnectionState) -> None:
        """Put a connection executing requests inline under the watchdog (started if none
        runs)."""
        with self._lock:
            state.watched = True
            state.idle_ticks = 0
            self._watched.add(state)
            if self._watchdog is None:
                self._start_watchdog()

    def forget(self, state: TcpConnectionState) -> None:
        """The connection ended."""
        with self._lock:
            state.watched = False
            self._watched.discard(state)

    # --- the watchdog ---------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        """(Under the lock.)"""
        address = self.protocol.server.address
        port = address[1] if isinstance(address, tuple) else 0
        thread = threading.Thread(target=self._watch, daemon=True,
                                  name="hprose-cluster-%s-watch-%s" % (self.kind, port))
        self._watchdog = thread
        thread.start()

    def _watch(self) -> None:
        serving = self.protocol.server._serving
        while True:
            time.sleep(TICK)
            now = _clock()
            with self._lock:
                if serving.stopping or not self._watched:
                    self._watchdog = None
                    return
                watched = list(self._watched)
            for state in watched:
                since = state.inline_since
                if since:
                    state.idle_ticks = 0
                    if now - since >= TICK and not state.helped:
                        self._help(state, since)
                else:
                    state.idle_ticks += 1
                    if state.idle_ticks > _IDLE_TICKS:
                        self._unwatch(state)

    def _unwatch(self, state: TcpConnectionState) -> None:
        """Take an idle connection out of the set, unless a request just started there."""
        with self._lock:
            state.watched = False
            if not state.inline_since:  # read after the store above (see the module)
                self._watched.discard(state)
            else:
                state.watched = True
                state.idle_ticks = 0

    def join(self, timeout: float) -> None:
        """Wait for the watchdog to end (it does within a tick once the server stops)."""
        thread = self._watchdog
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _help(self, state: TcpConnectionState, since: float) -> None:
        """Start a helper reading ``state``'s connection, unless its request just ended."""
        if not state.read_lock.acquire(blocking=False):
            return  # the helper of an earlier request is still winding down
        try:
            if state.inline_since != since or state.closed or state.conn.shut:
                return
            state.helped = True  # until the helper ends; the connection's end waits for it
        finally:
            state.read_lock.release()
        self.protocol.server._serving.submit(state.conn, self._read_meanwhile, state)

    # --- the helper (a worker) ------------------------------------------------------------

    def _read_meanwhile(self, state: TcpConnectionState) -> None:
        """Read the connection while its thread executes a request: full-duplex frames go
        to the workers, half-duplex ones are answered here, in order."""
        protocol = self.protocol
        conn = state.conn
        decoder = state.decoder
        poller = select.poll()
        try:
            poller.register(conn.sock, _POLL_INPUT)
            context = None
            while state.inline_since and not state.closed:
                pending = isinstance(state.io, streams.SslIo) and state.io.pending()
                if not pending and not poller.poll(TICK * 1000):
                    continue
                with state.read_lock:
                    if not state.inline_since or state.closed:
                        return
                    data = state.io.recv(streams.RECV_CHUNK)
                    if not data:
                        decoder.closed()
                    decoder.feed(data)
                    state.fed = True
                    frame = decoder.next_frame()
                    while frame is not None:
                        if frame.request_id is not None:
                            if not protocol.dispatch(conn, state, frame):
                                return
                        else:
                            if context is None:
                                from .protocol import TcpContext
                                context = TcpContext(protocol.server, conn.peer, None)
                            if not protocol.answer(conn, state, frame.body, -1, context,
                                                   here=False):
                                state.failure = framing.ConnectionClosed("answered",
                                                                         clean=True)
                                return
                        frame = decoder.next_frame()
        except (framing.ConnectionClosed, framing.OversizedFrame) as ended:
            state.failure = ended
        except (OSError, ValueError) as error:  # reset, TLS error, closed under us
            state.failure = error if isinstance(error, OSError) else OSError(str(error))
        finally:
            with state.cond:
                state.helped = False
                state.cond.notify_all()

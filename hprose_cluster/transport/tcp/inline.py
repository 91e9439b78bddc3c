"""Full-duplex requests executed on their connection's own thread, without holding up the
requests behind them.

Handing a request to a worker costs two thread crossings (and their system calls) per call;
with one calling thread on the other side that is most of what full duplex costs over half
duplex.  So a full-duplex request that finds nothing else of its connection running or
waiting is executed right on the connection's thread.  But then nobody reads that connection
while it runs, and a slow request would hold up the calls pipelined behind it, which full
duplex exists to avoid.  So one watchdog thread per server looks, every ``TICK``, at the
requests running inline; for one that has run a whole tick it starts a *helper* on the
worker pool, which reads the connection meanwhile and hands what comes to the workers (a
half-duplex frame it answers itself, in order).  When the inline request ends, reading goes
back to the connection's thread.  A slow request thus delays the ones behind it by at most
about a tick; a fast one costs a set insertion and a clock reading.

The helper and the connection's thread never read at the same time: the helper reads only
under the connection's ``read_lock`` and only while ``inline_since`` is set, and the
connection's thread clears it under that lock before reading again.  The watchdog runs only
while inline requests come (it ends after ``IDLE`` seconds without one, and with the server).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import TYPE_CHECKING

from .. import framing, streams
from ..connection import Connection

if TYPE_CHECKING:
    from .protocol import TcpConnectionState, TcpProtocol

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["InlineRunner", "TICK"]

TICK = 0.005
"""How long a full-duplex request runs on its connection's thread before a helper reads that
connection in its place."""

IDLE = 1.0
"""The watchdog ends after this long without a request running inline."""

_clock = time.monotonic
_POLL_INPUT = select.POLLIN | select.POLLERR | select.POLLHUP


class InlineRunner:
    """The inline execution of full-duplex requests for one server (see the module)."""

    def __init__(self, kind: str):
        self.kind = kind  # for the watchdog's thread name
        self.protocol: TcpProtocol  # set by the protocol's owner
        self._running: set[TcpConnectionState] = set()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    # --- on the connection's thread -------------------------------------------------------

    def run(self, conn: Connection, state: TcpConnectionState, body: bytes,
            request_id: int) -> bool:
        """Execute one full-duplex request here and write its reply; False when the
        connection is done."""
        protocol = self.protocol
        state.inline_since = _clock()
        with self._lock:
            self._running.add(state)
            if self._watchdog is None:
                self._start_watchdog()
        try:
            reply = protocol.answer_full_duplex(conn, body, request_id)
        finally:
            with state.read_lock:  # from here on no helper reads
                state.inline_since = 0.0
            self._running.discard(state)
        if reply is None:  # stop() shut the connection: not executed
            return False
        try:
            sent = protocol.send_reply(conn, state, reply)
        finally:
            protocol.server._serving.request_finished(conn)
        failure = state.failure
        if failure is not None:  # the helper's reading ended the connection
            if isinstance(failure, framing.ConnectionClosed):
                protocol.closed_while_reading(state, failure)
            elif isinstance(failure, framing.OversizedFrame):
                protocol.refused(state, failure)
            else:
                raise failure
            return False
        return sent

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
        idle_since = _clock()
        while True:
            time.sleep(TICK)
            now = _clock()
            with self._lock:
                if serving.stopping or (not self._running and now - idle_since > IDLE):
                    self._watchdog = None
                    return
                running = list(self._running)
            if running:
                idle_since = now
            for state in running:
                since = state.inline_since
                if since and now - since >= TICK and not state.helped:
                    self._help(state, since)

    def join(self, timeout: float) -> None:
        """Wait for the watchdog to end (it does within a tick once the server stops)."""
        thread = self._watchdog
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _help(self, state: TcpConnectionState, since: float) -> None:
        """Start a helper reading ``state``'s connection, unless its request just ended."""
        if not state.read_lock.acquire(blocking=False):
            return  # it is ending right now
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
                            if not protocol.answer_half_duplex(conn, state, frame.body,
                                                               context):
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

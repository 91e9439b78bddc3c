"""One upgraded WebSocket connection on the server: read messages, run them, answer by id.

The connection's own thread reads and parses (``Channel``); every request goes to the
server's worker pool, so requests of one connection run concurrently and are answered in
completion order, each reply carrying its request's 4 id bytes.  At most ``max_pending``
requests of one connection are queued or running before its reader waits (back pressure).

Draining (``drain()``, from the lifecycle's quiesce): requests read from then on are dropped
unexecuted; once the last running one is answered the close frame ``DRAIN_CLOSE`` goes out,
so a client knows its unanswered calls never ran; the reader then discards what still comes
until the client's close (at most ``close_timeout``).  ``abandon()`` (drain time over with
requests still running) closes with 1001 and keeps their late replies out.

A binary message shorter than a request id closes this connection (1002), and only it; text
messages are ignored; ping and close are answered by the protocol.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
from typing import TYPE_CHECKING, Any

from ...deadline import Deadline
from ..connection import Connection
from ..streams import SendTimeout, SslIo, send_before, shutdown_socket
from .protocol import DRAIN_CLOSE, Channel, ChannelClosed

if TYPE_CHECKING:
    from ..serving import Serving
    from .server import WebSocketServer

_log = logging.getLogger("hprose_cluster.transport.websocket")

_RECV = 256 * 1024
_PROTOCOL_ERROR = 1002
_GOING_AWAY = 1001


class WebSocketContext:
    """The ``context`` hprose hands to filters, events and functions taking ``context``."""

    __slots__ = ("server", "peer", "request_id", "path", "headers")

    def __init__(self, server: "WebSocketServer", peer: Any, request_id: int, path: str,
                 headers: Any):
        self.server = server
        self.peer = peer
        self.request_id = request_id
        self.path = path  # of the upgrade request
        self.headers = headers  # of the upgrade request

    def __repr__(self) -> str:
        return "WebSocketContext(peer=%r, request_id=%r)" % (self.peer, self.request_id)


class Session:
    """The server side of one WebSocket (``Connection.protocol`` once upgraded)."""

    def __init__(self, server: "WebSocketServer", serving: "Serving", conn: Connection,
                 channel: Channel, path: str, headers: Any):
        self.server = server
        self.serving = serving
        self.conn = conn
        self.channel = channel
        self.path = path
        self.headers = headers
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            self.io: Any = SslIo(sock)  # read here while workers write
        else:
            sock.settimeout(None)
            self.io = sock
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self.outstanding = 0  # requests queued or running
        self.draining = False  # requests read from now on are not executed
        self.abandoned = False  # replies are no longer sent
        self.close_sent = False

    # --- the connection's thread ----------------------------------------------------------

    def run(self, early: bytes) -> None:
        """Serve until the WebSocket is closed, broken or drained."""
        data = early
        first = True
        while True:
            if not (first and data):
                if self.close_sent and not self._readable(self.server.close_timeout):
                    return  # the client did not answer our close in time
                data = self.io.recv(_RECV)
            first = False
            received = self.channel.receive(data)
            if received.writes:
                self._write(received.writes)
            for payload in received.messages:
                if not self._dispatch(payload):
                    return
            if received.eof or self.channel.finished or not data:
                return
            if received.closed and self.channel.close_received is None:
                return  # a protocol error or a message too big: the protocol closed with 1002/1009

    def _readable(self, timeout: float) -> bool:
        sock = self.conn.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            return bool(select.select([sock], [], [], timeout)[0])
        except (OSError, ValueError):
            return False

    def _dispatch(self, payload: bytes) -> bool:
        """Queue one request; False ends the connection."""
        if len(payload) < 4:
            _log.warning("WebSocket client %s sent a message of %d bytes, shorter than a "
                         "request id; closing its connection", self.serving_peer, len(payload))
            self.close(_PROTOCOL_ERROR, "message shorter than a request id")
            return False
        max_pending = self.server.max_pending
        with self._cond:
            while self.outstanding >= max_pending and not (self.draining or self.abandoned):
                self._cond.wait()
            if self.draining or self.abandoned:
                return True  # read after the cutoff: dropped unexecuted
            if not self.serving.request_started(self.conn):
                return True  # shut down by stop(): never executed
            self.outstanding += 1
        self.serving.submit(self.conn, self._answer, payload)
        return True

    @property
    def serving_peer(self) -> str:
        peer = self.conn.peer
        return "%s:%s" % peer[:2] if isinstance(peer, tuple) else str(peer or "local")

    # --- worker threads -------------------------------------------------------------------

    def _answer(self, payload: bytes) -> None:
        request_id = int.from_bytes(payload[:4], "big")
        try:
            context = WebSocketContext(self.server, self.conn.peer, request_id, self.path,
                                       self.headers)
            reply = self.server._handle(payload[4:], context)
            with self._cond:
                frame = b""
                if not self.abandoned:
                    try:
                        frame = self.channel.message(payload[:4] + reply)
                    except ChannelClosed:
                        pass  # closed under us (a short message, a protocol error)
            if frame:
                self._write(frame)
        finally:
            with self._cond:
                self.outstanding -= 1
                last = self.draining and self.outstanding == 0
                self._cond.notify_all()
            if last:  # every request read before the cutoff is answered
                self.close(DRAIN_CLOSE, "server draining")
            self.serving.request_finished(self.conn)

    def _write(self, data: bytes) -> None:
        """Write under the send lock within ``send_timeout``; a client that reads nothing
        for that long is disconnected, so it cannot hold the workers answering others."""
        timeout = self.server.send_timeout
        deadline = Deadline(timeout)
        if not self._send_lock.acquire(timeout=-1 if timeout is None else timeout):
            self._give_up("read no reply for %.3g s" % (timeout or 0))
            return
        try:
            send_before(self.io, data, deadline)
        except SendTimeout:
            self._give_up("read no reply for %.3g s" % (timeout or 0))
        except OSError as error:
            _log.debug("cannot write to WebSocket client %s: %s", self.serving_peer, error)
        finally:
            self._send_lock.release()

    def _give_up(self, why: str) -> None:
        if not self.abandoned:
            _log.warning("closing WebSocket connection from %s: it %s", self.serving_peer, why)
        with self._cond:
            self.abandoned = True
            self._cond.notify_all()
        shutdown_socket(self.conn.sock)

    # --- stopping -------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Send a close frame once (after it no data frame may follow)."""
        with self._cond:
            if self.close_sent:
                return
            self.close_sent = True
            self._cond.notify_all()
            try:
                frame = self.channel.close(code, reason)
            except Exception:  # an invalid state: the protocol is closing already
                frame = b""
        if frame:
            self._write(frame)

    def drain(self) -> None:
        """Stop executing new requests; close as soon as the running ones are answered."""
        with self._cond:
            self.draining = True
            idle = self.outstanding == 0
            self._cond.notify_all()
        if idle:
            self.close(DRAIN_CLOSE, "server draining")

    def abandon(self) -> None:
        """The drain time is over with requests running: they may have run (1001)."""
        with self._cond:
            self.abandoned = True
            self._cond.notify_all()
        self.close(_GOING_AWAY, "server stopped with requests running")

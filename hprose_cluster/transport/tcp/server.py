"""The hprose TCP transport, server side: ``TcpServer``, on the shared serving lifecycle.

The server decides the mode per frame, as the Go server does (``transport.framing``): a
half-duplex request is executed on its connection's thread, so that connection's requests are
answered one at a time, in order (what a Go client expects); a full-duplex request goes to the
lifecycle's bounded worker pool and is answered with its id when done, possibly out of order.

TLS: give ``ssl_context`` (the lifecycle does the handshake).  A TLS connection that is read
and written by different threads goes through ``streams.SslIo``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import struct
import threading
from typing import Any, Callable

from hprose.server import HproseService

from ... import compat
from ...deadline import Deadline
from ...errors import ConfigError
from .. import framing, streams
from ..connection import Connection, ConnectionHandler
from ..listen import server_url
from ..server_base import ServerBase
from ..serving import Serving

compat.apply()

_pack_word = struct.Struct(">I").pack
_word_from = int.from_bytes
_DONTWAIT = socket.MSG_DONTWAIT
_RECV_CHUNK = 64 * 1024
_MAX_RECV = 1024 * 1024

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["TcpServer", "TcpContext"]


class TcpContext:
    """The ``context`` hprose hands to filters, events and functions taking ``context``."""

    __slots__ = ("server", "peer", "request_id")

    def __init__(self, server: "TcpServer", peer: Any, request_id: int | None):
        self.server = server
        self.peer = peer
        self.request_id = request_id  # None for a half-duplex request

    def __repr__(self) -> str:
        return "TcpContext(peer=%r, request_id=%r)" % (self.peer, self.request_id)


class _TcpConnection:
    """The TCP protocol's state for one connection (``Connection.protocol``): the stream
    replies are written to, its write lock, and the count of full-duplex requests queued."""

    __slots__ = ("io", "send_lock", "cond", "outstanding", "closed")

    def __init__(self, io: streams.ByteStream):
        self.io = io
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.outstanding = 0
        self.closed = False


class _TcpProtocol(ConnectionHandler):
    """How the lifecycle's connections speak hprose TCP."""

    def __init__(self, server: "TcpServer"):
        self.server = server

    def serve_connection(self, conn: Connection) -> None:
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            state = _TcpConnection(streams.SslIo(sock))
        else:
            sock.settimeout(None)
            state = _TcpConnection(sock)
        conn.protocol = state
        try:
            self._read_requests(conn, state)
        except (ssl.SSLError, OSError) as error:
            if not state.closed and not conn.shut:
                logger.debug("hprose TCP connection from %s: %s", conn.peer, error)
        finally:
            with state.cond:  # let full-duplex replies of this connection go out first
                state.cond.wait_for(lambda: state.outstanding == 0 or state.closed)

    def quiesce(self, conn: Connection) -> None:
        """No new requests; replies still go out."""
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_RD)
        except (OSError, ValueError):
            pass

    def abandon(self, conn: Connection) -> None:
        self._close(conn)

    def _close(self, conn: Connection) -> None:
        state: _TcpConnection | None = conn.protocol
        if state is not None:
            with state.cond:
                state.closed = True
                state.cond.notify_all()
        self.server._serving.shut(conn)

    def send(self, conn: Connection, data: bytes) -> bool:
        """Write one reply; False when the connection is no longer usable.

        A client that stops reading its replies would otherwise hold the writing thread (and,
        through the send lock, every worker answering it) for ever: after ``send_timeout``
        the connection is closed instead.
        """
        state: _TcpConnection = conn.protocol
        send_timeout = self.server.send_timeout
        deadline = Deadline(send_timeout)
        try:
            if not state.send_lock.acquire(timeout=-1.0 if send_timeout is None
                                           else send_timeout):
                raise streams.SendTimeout(partial=False)
            try:
                streams.send_before(state.io, data, deadline)
            finally:
                state.send_lock.release()
            return True
        except streams.SendTimeout:
            if not state.closed:
                logger.warning("closing hprose TCP connection from %s: it read no reply for "
                               "%.3g s", conn.peer, send_timeout)
            self._close(conn)
            return False
        except OSError as error:
            logger.debug("cannot answer %s: %s", conn.peer, error)
            return False

    def _read_requests(self, conn: Connection, state: _TcpConnection) -> None:
        """Read frames until the connection ends.  A small half-duplex request usually comes
        in one ``recv`` holding exactly its frame: that is answered straight from the bytes
        received; anything else (several frames, a partial one, full duplex) goes through the
        ``FrameDecoder``."""
        server = self.server
        serving = server._serving
        max_frame = server.max_frame
        recv = state.io.recv
        decoder = framing.FrameDecoder(max_frame)
        context = TcpContext(server, conn.peer, None)  # one per connection: nothing varies
        while True:
            try:
                if not decoder.buffered:
                    data = recv(_RECV_CHUNK)
                    size = len(data)
                    if size > 4:
                        word = _word_from(data[:4], "big")
                        if word + 4 == size and word <= max_frame:
                            if not self._answer_half_duplex(conn, state, data[4:], context):
                                return
                            continue
                    elif not data:
                        decoder.closed()
                    decoder.feed(data)
                frame = decoder.next_frame()
                while frame is None:
                    want = decoder.wanted()
                    data = recv(_RECV_CHUNK if want < _RECV_CHUNK else min(want, _MAX_RECV))
                    if not data:
                        decoder.closed()
                    decoder.feed(data)
                    frame = decoder.next_frame()
            except framing.ConnectionClosed as closed:
                if not closed.clean and not state.closed and not conn.shut:
                    logger.warning("hprose TCP connection from %s closed in the middle of a "
                                   "frame", conn.peer)
                return
            except framing.OversizedFrame as error:
                logger.error("hprose TCP server %s: closing connection from %s: %s",
                             server.url, conn.peer, error)
                return
            if frame.request_id is None:
                if not self._answer_half_duplex(conn, state, frame.body, context):
                    return
                continue
            with state.cond:
                state.cond.wait_for(
                    lambda: state.outstanding < server._max_pending or state.closed)
                if state.closed:
                    return
                state.outstanding += 1
            serving.submit(conn, self._answer_full_duplex, conn, state, frame)

    def _answer_half_duplex(self, conn: Connection, state: _TcpConnection, body: bytes,
                            context: TcpContext) -> bool:
        """Execute one half-duplex request on the connection's thread and write its reply;
        False when the connection is finished.

        A request counts as in flight from its execution until its reply is written, so
        stop() never closes a connection between the two.  With no full-duplex request of
        this connection outstanding this thread is the only writer: one non-blocking send,
        no lock; only a reply the socket does not take at once goes through ``send``.
        """
        serving = self.server._serving
        if not serving.request_started(conn):
            return False
        try:
            reply = self.server._handle(body, context)
            length = len(reply)
            if length > framing.LENGTH_MASK:
                raise ValueError("hprose frame body too large: %d bytes" % length)
            frame = _pack_word(length) + reply
            io = state.io
            if state.outstanding or type(io) is streams.SslIo:
                return self.send(conn, frame)
            try:
                sent = io.send(frame, _DONTWAIT)  # type: ignore[attr-defined]
            except BlockingIOError:
                sent = 0
            except OSError as error:
                logger.debug("cannot answer %s: %s", conn.peer, error)
                return False
            if sent == len(frame):
                return True
            return self.send(conn, memoryview(frame)[sent:])  # type: ignore[arg-type]
        finally:
            serving.request_finished(conn)

    def _answer_full_duplex(self, conn: Connection, state: _TcpConnection,
                            frame: framing.Frame) -> None:
        server = self.server
        serving = server._serving
        try:
            if serving.request_started(conn):
                try:
                    reply = server._handle(frame.body,
                                           TcpContext(server, conn.peer, frame.request_id))
                    self.send(conn, framing.encode_full(reply, frame.request_id or 0))
                finally:
                    serving.request_finished(conn)
        finally:
            with state.cond:
                state.outstanding -= 1
                state.cond.notify_all()


class TcpServer(ServerBase, HproseService):
    """An hprose service served over TCP on threads: ``TcpServer("127.0.0.1", 4321)``.

    Add functions as with hprose (``addFunction``, ``add``, ...), then ``start()``.
    Each connection has a thread that reads frames; half-duplex requests run there, in order,
    full-duplex ones on a pool of ``workers`` threads shared by the server, at most
    ``max_pending`` queued per connection before that connection's reader waits (back
    pressure).  A client that reads no reply for ``send_timeout`` seconds is disconnected, so
    it cannot hold the workers that answer everyone else.

    A frame declaring more than ``max_frame`` bytes closes its connection with one logged error
    and nothing allocated for it; an unparsable request gets an hprose ``E`` reply, as from Go.

    ``scheme`` is ``tcp4`` for an IPv4 literal host (``"0.0.0.0"`` included) or
    ``family=AF_INET``, ``tcp6`` for an IPv6 literal host (``"::"`` included) or
    ``family=AF_INET6``, and ``tcp`` for a host name or ``""``; with ``ssl_context`` the TLS
    names of hprose for Node.js: ``tcp4s``, ``tcp6s``, ``tcps`` (a Go client needs ``tcp://``
    plus its own TLS config: give the cluster server an ``advertise_url``).

    Hooks for subclasses (the cluster mixin): ``_on_listening()`` runs after the socket
    listens and before serving; ``_before_stop()`` runs first thing in ``stop()``.
    ``open_socket`` (a callable returning a listening socket) and ``kind`` (thread names) let
    a subclass serve the same protocol on another kind of socket (unix sockets).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, family: int | None = None,
                 max_frame: int = framing.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None,
                 workers: int = 16, max_pending: int = 64, send_timeout: float | None = 30.0,
                 open_socket: Callable[[], socket.socket] | None = None, kind: str = "tcp"):
        super().__init__()
        compat.apply()
        if max_frame < 1 or max_frame > framing.LENGTH_MASK:
            raise ConfigError("max_frame must be in 1..%d, not %r"
                              % (framing.LENGTH_MASK, max_frame))
        if send_timeout is not None and send_timeout <= 0:
            raise ConfigError("send_timeout must be > 0 or None, not %r" % (send_timeout,))
        self.host = host
        self.port = port
        self.family = family
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        self.send_timeout = send_timeout
        self._max_pending = max(1, int(max_pending))
        self._protocol = _TcpProtocol(self)
        self._serving = Serving(
            self._protocol, host=host, port=port, family=family or socket.AF_UNSPEC,
            kind=kind, log=logger, ssl_context=ssl_context, handshake_timeout=10.0,
            workers=max(1, int(workers)), on_listening=lambda: self._on_listening(),
            before_stop=lambda: self._before_stop(), open_socket=open_socket)

    @property
    def scheme(self) -> str:
        tls = "s" if self.ssl_context is not None else ""
        if self.family == socket.AF_INET:
            return "tcp4" + tls
        if self.family == socket.AF_INET6:
            return "tcp6" + tls
        try:
            literal = ipaddress.ip_address(self.host)
        except ValueError:
            return "tcp" + tls
        return ("tcp4" if literal.version == 4 else "tcp6") + tls

    @property
    def url(self) -> str:
        host, port = self.address if self.address is not None else (self.host, self.port)
        return server_url(self.scheme, host, port)

    def connections(self) -> list[Connection]:
        """The connections open now (for tests and diagnostics)."""
        return self._serving.connections()

    def close_connection(self, conn: Connection) -> None:
        """Drop one connection now (its calls in flight fail on the client)."""
        self._protocol._close(conn)


"""hprose over WebSocket, server side: ``WebSocketServer``, on the shared serving lifecycle.

Every connection starts as HTTP/1.1 and is served by the HTTP transport's request handler, so
the same port answers plain hprose POSTs (and GET with the function list) exactly as
``HttpServer`` does, and as Go's WebSocketService does.  A ``GET`` asking for
``Upgrade: websocket`` is answered by ``websockets``' sans-I/O ``ServerProtocol`` (no
subprotocol, no extension, any origin, any path: Go's behaviour) and the connection becomes a
``Session`` (``session.py``): binary messages of a request id and an hprose body, run
concurrently on the server's workers and answered by id.

Stopping is the lifecycle's (deregister first, stop accepting, drain, signals); a WebSocket
drains by finishing its running requests and then closing with ``DRAIN_CLOSE``.
"""

from __future__ import annotations

import logging
import socket
import ssl

from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from ...errors import ConfigError
from ...service import HttpService
from ..connection import Connection
from ..http.framing import DEFAULT_MAX_BODY
from ..http.handler import HttpConnectionState, RequestHandler
from ..http.server import _HttpProtocol
from ..listen import server_url
from ..server_base import ServerBase
from ..serving import Serving
from .protocol import DEFAULT_MAX_MESSAGE, PROTOCOL_LOG, Channel
from .session import Session, WebSocketContext

__all__ = ["WebSocketServer", "WebSocketContext"]

_log = logging.getLogger("hprose_cluster.transport.websocket")


def _wants_websocket(handler: RequestHandler) -> bool:
    if handler.command != "GET":
        return False
    upgrade = ",".join(handler.headers.get_all("Upgrade") or ()).lower()
    return "websocket" in upgrade


class _UpgradingHandler(RequestHandler):
    """The HTTP handler, plus: a WebSocket upgrade request is answered here (101, or an
    error status) and the connection becomes a ``Session`` (``upgraded``), still within the
    upgrade request, so that a stop() racing with it finds the session to drain."""

    upgraded: tuple[Session, bytes] | None = None

    def _serve_request(self) -> None:
        if not _wants_websocket(self):
            super()._serve_request()
            return
        handshake = ServerProtocol(logger=PROTOCOL_LOG)  # no extension, subprotocol, origin check
        request = Request(self.path, Headers(self.headers.items()))
        response = handshake.accept(request)
        self.close_connection = True  # HTTP is over on this connection, whatever the outcome
        with self.state.write_lock:
            if self.state.abandoned:
                return
            self.write(response.serialize())
        if response.status_code != 101:
            _log.info("%s: WebSocket upgrade refused (%d): %s", self.address_string(),
                      response.status_code, handshake.handshake_exc)
            return
        early = self.hand_over()  # what the client sent with the handshake, if anything
        frames = ServerProtocol(state=OPEN, max_size=self.server.max_message,
                                logger=PROTOCOL_LOG)
        session = Session(self.server, self.serving, self.conn, Channel(frames), self.path,
                          self.headers)
        self.conn.protocol = session  # from now on quiesce() drains it
        if self.serving.stopping:
            session.drain()  # upgraded while stopping: close at once, nothing will run
        self.upgraded = (session, early)


class _WsProtocol(_HttpProtocol):
    """HTTP until a connection upgrades, then a WebSocket ``Session``."""

    server: "WebSocketServer"

    def serve_connection(self, conn: Connection) -> None:
        conn.protocol = HttpConnectionState()
        handler = _UpgradingHandler(conn, self.server)  # type: ignore[arg-type]
        if handler.upgraded is not None:
            session, early = handler.upgraded
            session.run(early)

    def quiesce(self, conn: Connection) -> None:
        if isinstance(conn.protocol, Session):
            conn.protocol.drain()
        else:
            super().quiesce(conn)

    def abandon(self, conn: Connection) -> None:
        if isinstance(conn.protocol, Session):
            conn.protocol.abandon()
        else:
            super().abandon(conn)


class WebSocketServer(ServerBase, HttpService):
    """An hprose service over WebSocket (and plain HTTP on the same port), on threads.

    ``WebSocketServer(host, port)``, add functions as with hprose, then ``start()`` (blocks
    until ``stop()``, SIGTERM or Ctrl-C) or ``start(block=False)``.  ``url`` is
    ``ws://host:port/`` (``wss://`` with an ``ssl_context``); any path is served.

    Requests of one WebSocket run concurrently on up to ``workers`` threads shared by the
    server, at most ``max_pending`` per connection; a message over ``max_message`` bytes
    closes its connection (1009), as does one shorter than a request id (1002).  A client
    that reads no reply for ``send_timeout`` seconds is disconnected.  After our close frame a
    client has ``close_timeout`` seconds to answer it.  ``max_body`` and ``idle_timeout`` are
    the HTTP side's (as ``HttpServer``); ``idle_timeout`` applies until a connection upgrades.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 ssl_context: ssl.SSLContext | None = None,
                 max_message: int = DEFAULT_MAX_MESSAGE, max_body: int = DEFAULT_MAX_BODY,
                 idle_timeout: float = 60.0, workers: int = 16, max_pending: int = 64,
                 send_timeout: float | None = 30.0, close_timeout: float = 2.0):
        super().__init__()
        for name, value in (("max_message", max_message), ("max_body", max_body),
                            ("workers", workers), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("%s must be a positive integer, not %r" % (name, value))
        for name, number in (("idle_timeout", idle_timeout), ("close_timeout", close_timeout),
                             ("send_timeout", 1.0 if send_timeout is None else send_timeout)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
                raise ConfigError("%s must be a positive number, not %r" % (name, number))
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_message = max_message
        self.max_body = max_body
        self.idle_timeout = float(idle_timeout)
        self.max_pending = max_pending
        self.send_timeout = send_timeout
        self.close_timeout = float(close_timeout)
        self._serving = Serving(
            _WsProtocol(self), host=host, port=port, family=socket.AF_UNSPEC, kind="ws",
            log=_log, ssl_context=ssl_context, handshake_timeout=self.idle_timeout,
            workers=workers, on_listening=lambda: self._on_listening(),
            before_stop=lambda: self._before_stop())

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    @property
    def url(self) -> str:
        """``ws://host:port/`` (or ``wss://``) of the bound socket (IPv6 hosts in brackets)."""
        address = self.address
        if address is None:
            raise RuntimeError("WebSocketServer is not listening yet; call listen() or start()")
        return server_url(self.scheme, address[0], address[1], "/")

    def connections(self) -> list[Connection]:
        """The connections open now, HTTP or upgraded (for tests and diagnostics)."""
        return self._serving.connections()

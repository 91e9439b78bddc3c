"""hprose over HTTP, server side: ``HttpServer``, on the shared serving lifecycle.

hprose 1.4.3 serves HTTP with a single-threaded wsgiref server that speaks HTTP/1.0, blocks
forever and calls ``exit()`` on Ctrl-C (WIRE.md, defect 4).  ``HttpServer`` keeps the wire
format (``POST`` with ``Content-Type: application/hprose``; reply ``200`` with
``Content-Type: text/plain``) and serves one thread per connection with keep-alive, request
size limits, idle timeouts, HTTPS, and a graceful ``stop()`` that drains.
"""

from __future__ import annotations

import logging
import socket
import ssl


from ...errors import ConfigError
from ...service import HttpService
from ..connection import Connection, ConnectionHandler
from ..listen import server_url
from ..server_base import ServerBase
from ..serving import Serving
from .framing import ABANDONED_REPLY, DEFAULT_MAX_BODY
from .handler import HttpConnectionState, RequestHandler

__all__ = ["HttpServer"]

_log = logging.getLogger("hprose_cluster.transport.http")


class _HttpProtocol(ConnectionHandler):
    """How the lifecycle's connections speak HTTP."""

    def __init__(self, server: "HttpServer"):
        self.server = server

    def serve_connection(self, conn: Connection) -> None:
        conn.protocol = HttpConnectionState()
        RequestHandler(conn, self.server)  # runs setup(), handle(), finish()

    def abandon(self, conn: Connection) -> None:
        """Answer 503 for a request still running when the drain timeout ends.

        Closing the connection silently would look, to a client on a kept-alive connection,
        like a server closing an idle connection, and the client would retry a request that
        did run.  A status line first makes the failure a plain "sent" error.  If the handler
        is writing its reply right now (write_lock taken), that reply is on its way and is
        left alone.
        """
        state: HttpConnectionState | None = conn.protocol
        if state is None or not state.write_lock.acquire(blocking=False):
            return
        try:
            if conn.in_flight and not state.abandoned:
                state.abandoned = True
                conn.sock.settimeout(0.5)
                conn.sock.sendall(ABANDONED_REPLY)
        except (OSError, ValueError):
            pass
        finally:
            state.write_lock.release()


class HttpServer(ServerBase, HttpService):
    """An hprose service over HTTP/1.1 (or HTTPS), one daemon thread per connection.

    ``HttpServer(host, port)``, add functions as with hprose (``server.addFunction(hello)``),
    then ``start()`` (blocks until ``stop()``, SIGTERM or Ctrl-C) or ``start(block=False)``.
    ``stop()`` drains: requests being executed finish and are answered, idle connections are
    closed, and no thread is left behind.

    A body comes with a Content-Length or chunked (other transfer codings get 501, both
    framings at once 400).  Requests with a body larger than ``max_body`` get 413 and the
    connection is closed without reading the rest; a keep-alive connection idle for
    ``idle_timeout`` seconds is closed.  With
    ``ssl_context`` (a server-side ``ssl.SSLContext`` with a certificate loaded) it serves HTTPS.

    Hooks for ``hprose_cluster.server.ClusterServer``: ``_on_listening()`` runs once the socket
    listens (before serving) and ``_before_stop()`` runs first thing in ``stop()``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        idle_timeout: float = 60.0,
    ):
        super().__init__()
        if not isinstance(max_body, int) or max_body < 1:
            raise ConfigError("max_body must be a positive integer, not %r" % (max_body,))
        if not idle_timeout or idle_timeout <= 0:
            raise ConfigError("idle_timeout must be positive, not %r" % (idle_timeout,))
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_body = max_body
        self.idle_timeout = float(idle_timeout)
        self._serving = Serving(
            _HttpProtocol(self), host=host, port=port, family=socket.AF_UNSPEC, kind="http",
            log=_log, ssl_context=ssl_context, handshake_timeout=self.idle_timeout,
            on_listening=lambda: self._on_listening(), before_stop=lambda: self._before_stop())

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """``<scheme>://host:port/`` of the bound socket (IPv6 hosts in brackets)."""
        address = self.address
        if address is None:
            raise RuntimeError("HttpServer is not listening yet; call listen() or start()")
        return server_url(self.scheme, address[0], address[1], "/")

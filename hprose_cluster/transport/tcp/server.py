"""The hprose TCP transport, server side: ``TcpServer``, on the shared serving lifecycle.

The server decides the mode per frame, as the Go server does (``transport.framing``): a
half-duplex request is executed on its connection's thread, so that connection's requests are
answered one at a time, in order (what a Go client expects); a full-duplex request is answered
with its id when done, possibly out of order (``protocol.py`` says on which thread).

TLS: give ``ssl_context`` (the lifecycle does the handshake).  A TLS connection that is read
and written by different threads goes through ``streams.SslIo``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from typing import Callable


from ... import compat
from ...errors import ConfigError
from ...service import Service
from .. import framing
from ..connection import Connection
from ..listen import server_url
from ..server_base import ServerBase
from ..serving import Serving
from .inline import InlineRunner
from .protocol import TcpContext, TcpProtocol

compat.apply()

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["TcpServer", "TcpContext"]


class TcpServer(ServerBase, Service):
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
        self._inline = InlineRunner(kind)
        self._protocol = TcpProtocol(self, self._inline)
        self._inline.protocol = self._protocol
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
        self._protocol.close(conn)

    def stop(self, drain_timeout: float = 10.0) -> None:
        super().stop(drain_timeout)
        self._inline.join(1.0)


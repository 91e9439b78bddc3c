"""The hprose WebSocket client transport (``ws://``, ``wss://``), as Go's WebSocketClient.

One connection per server URL carries every call: each request is one binary message (a
request id, then the body), a reader thread hands each reply to its caller in whatever order
replies come.  The WebSocket protocol itself is ``websockets``' sans-I/O ``ClientProtocol``
over our own socket, so the call's deadline bounds the connect, the TLS and WebSocket
handshakes, the send and the wait, exactly as on the TCP transport.

Failures map onto ``hprose_cluster.errors``: no connection or a refused handshake is
``ConnectError`` (``sent=False``); no reply in time is ``CallTimeout``; a connection that
breaks fails only the calls waiting on it, with ``TransportError(sent=True)``, or
``sent=False`` when our server closed it with ``DRAIN_CLOSE`` (it answered everything it had
read); a reply that is not a valid message, or bigger than ``max_message``, is
``FrameError``.  The next call opens a new connection.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Mapping

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.http11 import Response
from websockets.uri import parse_uri

from ...deadline import Deadline
from ...errors import ConfigError, ConnectError
from ..base import TransportClient
from ..errors import connect_failed, timed_out_unsent
from ..streams import close_quietly
from .connection import Connection, DeadConnection
from .protocol import DEFAULT_MAX_MESSAGE, PROTOCOL_LOG, RECV_SIZE, Channel, parse_ws_url

__all__ = ["WebSocketTransport", "WebSocketClient"]

_USER_AGENT = "hprose-cluster"


class WebSocketTransport:
    """The hprose WebSocket wire for one server URL; implements ``transport.base.Transport``.

    ``ssl_context`` is used for ``wss://`` (default: ``ssl.create_default_context()``,
    certificates verified against the system store; Go's client skips verification).
    ``connect_timeout`` bounds the TCP connect and both handshakes (the call's timeout caps
    it).  Replies larger than ``max_message`` bytes (id included) fail the connection.
    ``headers`` go with the handshake request (``Origin``, ``Authorization``, ...).

    Thread-safe; ``close()`` closes the connection and joins its reader thread, and a later
    call opens a new one.
    """

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None,
                 connect_timeout: float | None = 5.0, max_message: int = DEFAULT_MAX_MESSAGE,
                 headers: Mapping[str, str] | None = None):
        self.secure, self.host, self.port, self.resource = parse_ws_url(url)
        self.url = url
        try:
            self._uri = parse_uri(url)
        except InvalidURI as error:
            raise ConfigError("bad hprose WebSocket URL %r: %s" % (url, error)) from error
        if not isinstance(max_message, int) or max_message < 5:
            raise ConfigError("max_message for %s must be an integer >= 5, not %r"
                              % (url, max_message))
        if connect_timeout is not None and connect_timeout <= 0:
            raise ConfigError("connect_timeout for %s must be positive, not %r"
                              % (url, connect_timeout))
        self.connect_timeout = connect_timeout
        self.max_message = max_message
        self.ssl_context = ssl_context
        if self.secure and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def __repr__(self) -> str:
        return "WebSocketTransport(%r)" % (self.url,)

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """Send one request and return its reply body (see ``Transport.round_trip``)."""
        for _ in range(3):
            try:
                return self._connection(deadline).call(request, deadline)
            except DeadConnection:
                # it closed before our message went out; the next connection is new
                if deadline.expired():
                    raise timed_out_unsent(self.url, deadline) from None
        raise ConnectError("hprose WebSocket connection to %s keeps closing" % self.url,
                           url=self.url)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "WebSocketTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- connecting -----------------------------------------------------------------------

    def _connection(self, deadline: Deadline) -> Connection:
        conn = self._conn
        if conn is not None and not conn.dead:
            return conn
        with self._lock:
            conn = self._conn
            if conn is None or conn.dead:
                if conn is not None:
                    conn.close()
                conn = self._open(deadline)
                self._conn = conn
            return conn

    def _open(self, deadline: Deadline) -> Connection:
        """TCP connect, TLS, WebSocket handshake: all within one limit; any failure is a
        ``ConnectError`` (no request was sent)."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        limit = deadline.cap(self.connect_timeout)
        if limit is not None:
            limit = max(limit, 0.001)
        until = Deadline(limit)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=limit)
        except OSError as error:
            raise connect_failed(self.url, error, limit) from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            channel, early = self._handshake(sock, until)
            sock.settimeout(None)
        except ConnectError:
            close_quietly(sock)
            raise
        except OSError as error:  # timeouts, resets, TLS errors: nothing was sent
            close_quietly(sock)
            raise connect_failed(self.url, error, limit) from error
        return Connection(sock, channel, self.url, early)

    def _handshake(self, sock: socket.socket, until: Deadline) -> tuple[Channel, list[bytes]]:
        """Send the upgrade request and read the 101.  Returns the channel and the messages
        that came in the same read as the response."""
        protocol = ClientProtocol(self._uri, max_size=self.max_message, logger=PROTOCOL_LOG)
        request = protocol.connect()
        request.headers["User-Agent"] = _USER_AGENT
        for name, value in self.headers.items():
            if name in request.headers:
                del request.headers[name]
            request.headers[name] = value
        protocol.send_request(request)
        sock.sendall(b"".join(protocol.data_to_send()))
        channel = Channel(protocol)
        while True:
            sock.settimeout(until.socket_timeout())  # TimeoutError when none is left
            data = sock.recv(RECV_SIZE)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            for index, event in enumerate(events):
                if isinstance(event, Response):
                    self._check_response(protocol, event)
                    return channel, channel.assemble(events[index + 1:])
            if not data:
                raise ConnectError("hprose WebSocket server %s closed the connection during "
                                   "the handshake" % self.url, url=self.url)

    def _check_response(self, protocol: ClientProtocol, response: Response) -> None:
        error = protocol.handshake_exc
        if error is None:
            return
        if isinstance(error, InvalidStatus):
            raise ConnectError("hprose WebSocket server %s refused the upgrade: HTTP %d %s"
                               % (self.url, response.status_code, response.reason_phrase),
                               url=self.url) from error
        raise ConnectError("hprose WebSocket handshake with %s failed: %s" % (self.url, error),
                           url=self.url) from error


class WebSocketClient(TransportClient):
    """A drop-in hprose client over WebSocket: ``WebSocketClient("ws://127.0.0.1:8080/")``.

    ``timeout`` is the default per-call timeout (None waits for ever); the other options are
    ``WebSocketTransport``'s.
    """

    def __init__(self, uri: str, *, timeout: float | None = 30.0, simple: bool = False,
                 ssl_context: ssl.SSLContext | None = None, connect_timeout: float | None = 5.0,
                 max_message: int = DEFAULT_MAX_MESSAGE, headers: Mapping[str, str] | None = None):
        super().__init__(timeout=timeout, simple=simple)
        self.transport = WebSocketTransport(uri, ssl_context=ssl_context,
                                            connect_timeout=connect_timeout,
                                            max_message=max_message, headers=headers)

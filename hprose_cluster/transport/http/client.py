"""hprose over HTTP, client side: keep-alive connections in a small pool per server URL.

hprose 1.4.3 opens a new TCP (and TLS) connection for every call.  ``HttpTransport`` keeps the
wire format (``POST`` with ``Content-Type: application/hprose``; reply ``200``) but keeps
HTTP/1.1 connections alive, and maps every failure onto the ``hprose_cluster.errors`` tree
(``transport.errors``), saying whether the request may have reached the server (``sent``),
which is what failover needs to know.  ``HttpClient`` is a drop-in ``hprose.HttpClient`` on
top of it.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from typing import Any, Mapping

from ...deadline import Deadline
from ...errors import CallTimeout, ConfigError, TransportError
from .. import streams
from ..base import BaseClient
from ..errors import call_failed, connect_error, timed_out_unsent
from .framing import DEFAULT_MAX_BODY
from .reply import StaleReply, read_reply
from .url import parse_http_url

__all__ = ["HttpTransport", "HttpClient"]

_log = logging.getLogger("hprose_cluster.transport.http")

_clock = time.monotonic
_DONTWAIT = socket.MSG_DONTWAIT
_MARGIN = streams.KERNEL_TIMEOUT_MARGIN

# A reused keep-alive connection that fails with one of these before any byte of the reply was
# read was (almost certainly) closed by the server while idle; see HttpTransport.round_trip.
_STALE_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)

# Headers the transport owns: the body framing and the hprose content type.
_RESERVED_HEADERS = {"content-type", "content-length", "transfer-encoding"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


class _Connection:
    """One kept-alive connection: its socket and the pool generation it was opened in."""

    __slots__ = ("sock", "tls", "generation")

    def __init__(self, sock: socket.socket, generation: int):
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.generation = generation

    def recv(self, deadline: Deadline, size: int = streams.RECV_CHUNK) -> bytes:
        """One receive by the call's deadline (``TimeoutError`` once it passed)."""
        sock = self.sock
        if self.tls:
            sock.settimeout(deadline.socket_timeout())
            return sock.recv(size)
        at = deadline.at
        rcvtimeo = sock.rcvtimeo  # type: ignore[attr-defined]
        if (not rcvtimeo) if at is None else 0.0 < rcvtimeo <= at - _clock() - _MARGIN:
            try:  # the kernel timeout set ends before the deadline: just receive
                return sock.recv(size)
            except BlockingIOError:
                pass
        return streams.recv_before(sock, at, size)  # type: ignore[arg-type]

    def close(self) -> None:
        streams.close_quietly(self.sock)


class _StaleConnection(Exception):
    """Internal: a reused connection turned out to be closed by the server before replying."""


class HttpTransport:
    """One hprose server reached over HTTP(S), with a pool of keep-alive connections.

    Each connection carries one request at a time.  At most ``pool_size`` idle connections are
    kept for reuse; a call that finds none idle opens a new one, and connections beyond
    ``pool_size`` are closed after their call (the pool never makes a call wait for another
    call, as urllib3 and Go's net/http behave by default).

    ``connect_timeout`` bounds the TCP connect and the TLS handshake; the per-call ``timeout``
    bounds everything (it also caps the connect).  ``ssl_context`` defaults to
    ``ssl.create_default_context()``: certificates are verified against the system store.
    ``headers`` are sent with every request (``Host`` may be overridden; the framing headers
    and ``Content-Type`` may not).  Replies larger than ``max_body`` are refused unread.

    The request goes out as one write (head and body); the reply's head is read and parsed
    by ``reply.py`` (``framing.py``'s strict parser; Content-Length, chunked or
    close-delimited bodies).  A plain socket stays in blocking mode with a kernel receive
    timeout changed only when a call's deadline needs a nearer one (``streams``).

    Thread-safe.  ``close()`` closes the idle connections at once and the busy ones when their
    call ends; the transport can be used again afterwards.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ):
        self.url = url
        scheme, self.host, self.port, self.target = parse_http_url(url)
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError("pool_size must be a positive integer, not %r (for %s)"
                              % (pool_size, url))
        if not connect_timeout or connect_timeout <= 0:
            raise ConfigError("connect_timeout must be positive, not %r (for %s)"
                              % (connect_timeout, url))
        if not isinstance(max_body, int) or max_body < 1:
            raise ConfigError("max_body must be a positive integer, not %r (for %s)"
                              % (max_body, url))
        self.scheme = scheme
        if _BAD_TARGET.search(self.target):
            raise ConfigError("bad HTTP URL %r: the path may not contain spaces, control or "
                              "non-ASCII characters (percent-encode them)" % (url,))
        self.pool_size = pool_size
        self.connect_timeout = float(connect_timeout)
        self.max_body = max_body
        self.ssl_context = ssl_context
        if scheme == "https" and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self._headers: dict[str, str] = {}
        self._head = b""
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self._build_head()
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._generation = 0

    def __repr__(self) -> str:
        return "HttpTransport(%r)" % (self.url,)

    # --- configuration --------------------------------------------------------------------

    def set_header(self, name: str, value: str | None) -> None:
        """Send ``name: value`` with every request (a false ``value`` removes the header)."""
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError("header %r is set by the HTTP transport and cannot be changed"
                              % (name,))
        if not _TOKEN.fullmatch(name):
            raise ConfigError("bad HTTP header name %r" % (name,))
        headers = dict(self._headers)  # copy-on-write: calls in flight keep a consistent dict
        if value:
            text = str(value)
            if _BAD_VALUE.search(text):
                raise ConfigError("bad value for HTTP header %r: %r (no CR, LF or NUL)"
                                  % (name, text))
            headers[name] = text
        else:
            headers.pop(name, None)
        self._headers = headers
        self._build_head()

    def _build_head(self) -> None:
        """The request head up to the Content-Length value, built once per header change:
        what ``http.client`` writes (Host with the port unless it is the default, IPv6 in
        brackets; Accept-Encoding: identity), then the caller's headers."""
        names = {name.lower() for name in self._headers}
        lines = ["POST %s HTTP/1.1" % self.target]
        if "host" not in names:
            try:
                host = self.host.encode("ascii").decode("ascii")
            except UnicodeEncodeError:
                host = self.host.encode("idna").decode("ascii")
            if ":" in host:
                host = "[%s]" % host
            default = 443 if self.scheme == "https" else 80
            lines.append("Host: %s" % (host if self.port == default else
                                       "%s:%d" % (host, self.port)))
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        lines += ["%s: %s" % item for item in self._headers.items()]
        lines += ["Content-Type: application/hprose", "Content-Length: "]
        self._head = "\r\n".join(lines).encode("latin-1")

    # --- the Transport protocol -----------------------------------------------------------

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """POST ``request``; return the reply body.

        A reused keep-alive connection can turn out to have been closed by the server while it
        sat idle (idle timeout, server restart).  Before reuse the pool drops connections that
        already show EOF; the remaining race (the server closes just as we send) shows up as
        an end of stream, ``BrokenPipeError`` or ``ConnectionResetError`` before a single
        byte of the status line.  Only then, and only once, the call is repeated on a fresh
        connection.  That is safe because an HTTP/1.1 server closes a keep-alive connection
        only *between* requests, i.e. without having read ours, and this check never fires on
        a fresh connection or after any reply byte.

        The residual risk is a peer that reads a request and then closes without a byte of
        reply: a server process killed mid-call, or a proxy dropping its backend.  On a reused
        connection that looks the same, so such a call may run twice.  ``HttpServer`` never
        does it: stop() closes only idle connections, never executes a request from a
        connection it has closed, and answers 503 for a request that outlives the drain.
        """
        data = self._head + b"%d\r\n\r\n" % len(request) + request
        conn = self._checkout()
        if conn is not None:
            try:
                return self._exchange(conn, data, deadline, reused=True)
            except _StaleConnection as stale:
                _log.debug("%s: kept-alive connection was closed by the server (%r); "
                           "retrying once on a new connection", self.url, stale.__cause__)
        conn = self._connect(deadline)
        return self._exchange(conn, data, deadline, reused=False)

    def retire(self) -> None:
        """The server left the view: the same as ``close()``, which is already gentle."""
        self.close()

    def close(self) -> None:
        """Close every idle connection now; connections in use close when their call ends."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> "HttpTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- pool -----------------------------------------------------------------------------

    def _checkout(self) -> _Connection | None:
        """The most recently used idle connection that still looks alive, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            sock = conn.sock
            if not (streams.readable_now(sock) if conn.tls
                    else sock.idle_poll(0)):  # type: ignore[attr-defined]
                return conn
            # EOF (or unexpected bytes) on an idle connection: the server closed it.
            conn.close()

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            if conn.generation == self._generation and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, deadline: Deadline) -> _Connection:
        """Open a connection (TCP, then TLS); every failure is a ``ConnectError`` (or a
        ``CallTimeout`` when the call's deadline ran out first), never ``sent``."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        limit = max(deadline.cap(self.connect_timeout) or 0.0, 0.001)
        try:
            infos = [(family, kind, proto, address) for family, kind, proto, _, address
                     in socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)]
            sock = streams.open_connection(infos, limit, self.ssl_context, self.host)
        except OSError as error:  # refused, unreachable, DNS, timed out, TLS
            raise connect_error(self.url, error, limit, deadline,
                                self.connect_timeout) from error
        with self._lock:
            generation = self._generation
        return _Connection(sock, generation)

    # --- one exchange ---------------------------------------------------------------------

    def _exchange(self, conn: _Connection, data: bytes, deadline: Deadline,
                  reused: bool) -> bytes:
        """Send on ``conn`` and read the reply; the connection goes back to the pool only
        after a complete, successful exchange, and is closed after anything else."""
        ok = False
        try:
            try:
                self._send(conn, data, deadline)
            except _STALE_ERRORS as error:
                if reused:
                    raise _StaleConnection() from error
                raise
            try:
                body, keep = read_reply(conn.recv, deadline, self.max_body, self.url)
            except StaleReply as stale:
                if reused:
                    raise _StaleConnection() from stale.__cause__
                raise TransportError("connection to %s closed by the server during the HTTP "
                                     "call, without a reply" % self.url, url=self.url,
                                     sent=True) from stale.__cause__
            ok = keep
            return body
        except (_StaleConnection, CallTimeout, TransportError):
            raise
        except OSError as error:
            raise call_failed(self.url, error, deadline, fresh=not reused,
                              what="HTTP call") from error
        finally:
            if ok:
                self._checkin(conn)
            else:
                conn.close()

    def _send(self, conn: _Connection, data: bytes, deadline: Deadline) -> None:
        """The whole request in one write, by the deadline."""
        sock = conn.sock
        if conn.tls:
            try:
                sock.settimeout(deadline.socket_timeout())
            except TimeoutError:
                raise timed_out_unsent(self.url, deadline) from None
            sock.sendall(data)
            return
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        try:
            sent = sock.send(data, _DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        try:
            streams.send_before(sock, memoryview(data)[sent:], deadline)
        except streams.SendTimeout as late:
            if not sent and not late.partial:
                raise timed_out_unsent(self.url, deadline, "while sending") from None
            raise CallTimeout("HTTP call to %s timed out after %s while sending"
                              % (self.url, deadline.describe()), url=self.url,
                              sent=True) from None


class HttpClient(BaseClient):
    """A drop-in ``hprose.HttpClient`` that keeps its connections alive.

    ``HttpClient("http://127.0.0.1:8080/")`` then ``client.hello("world")``, ``invoke``,
    ``useService``, filters, ``callback=`` as with hprose.  Failures below hprose raise the
    ``hprose_cluster.errors.TransportError`` family instead of raw socket errors.
    """

    def __init__(
        self,
        uri: str,
        *,
        timeout: float | None = 30.0,
        pool_size: int = 8,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        simple: bool = False,
    ):
        super().__init__(timeout=timeout, simple=simple)
        self.uri = uri
        self._transport = HttpTransport(uri, pool_size=pool_size,
                                        connect_timeout=connect_timeout,
                                        ssl_context=ssl_context, headers=headers,
                                        max_body=max_body)

    @property
    def transport(self) -> HttpTransport:
        return self._transport

    def setHeader(self, name: str, value: str | None) -> None:  # noqa: N802 - hprose's name
        """As ``hprose.HttpClient.setHeader``: an extra header on every request."""
        self._transport.set_header(name, value)

    def _round_trip(self, request: bytes, deadline: Deadline, **options: Any) -> bytes:
        # Options such as idempotent= matter to ClusterClient, not to a single connection.
        return self._transport.round_trip(request, deadline)

    def close(self) -> None:
        self._transport.close()

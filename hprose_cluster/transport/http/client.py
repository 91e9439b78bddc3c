"""hprose over HTTP, client side: keep-alive connections in a small pool per server URL.

hprose 1.4.3 opens a new TCP (and TLS) connection for every call.  ``HttpTransport`` keeps the
wire format (``POST`` with ``Content-Type: application/hprose``; reply ``200``) but keeps
HTTP/1.1 connections alive, and maps every failure onto the ``hprose_cluster.errors`` tree
(``transport.errors``), saying whether the request may have reached the server (``sent``),
which is what failover needs to know.  ``HttpClient`` is a drop-in ``hprose.HttpClient`` on
top of it.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import urllib.parse
from typing import Any, Mapping

from ...deadline import Deadline
from ...errors import CallTimeout, ConfigError, TransportError
from ..base import BaseClient
from ..errors import call_failed, connect_failed, timed_out_unsent
from ..streams import readable_now
from .framing import DEFAULT_MAX_BODY

__all__ = ["HttpTransport", "HttpClient"]

_log = logging.getLogger("hprose_cluster.transport.http")

_CHUNK = 64 * 1024

# A reused keep-alive connection that fails with one of these before any byte of the reply was
# read was (almost certainly) closed by the server while idle; see HttpTransport.round_trip.
_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                 ConnectionAbortedError)

# Headers the transport owns: the body framing and the hprose content type.
_RESERVED_HEADERS = {"content-type", "content-length", "transfer-encoding"}


class _PooledConnection:
    """An ``http.client`` connection plus the pool generation it was opened in."""

    __slots__ = ("http", "generation")

    def __init__(self, conn: http.client.HTTPConnection, generation: int):
        self.http = conn
        self.generation = generation


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
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise ConfigError("bad HTTP URL %r: %s" % (url, error)) from error
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigError("unsupported URL scheme %r in %r: expected http:// or https://"
                              % (parts.scheme, url))
        if not parts.hostname:
            raise ConfigError("no host in HTTP URL %r" % (url,))
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
        self.host = parts.hostname  # brackets of an IPv6 literal already removed
        self.port = port if port is not None else (443 if scheme == "https" else 80)
        self.target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.pool_size = pool_size
        self.connect_timeout = float(connect_timeout)
        self.max_body = max_body
        self.ssl_context = ssl_context
        if scheme == "https" and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self._headers: dict[str, str] = {}
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self._lock = threading.Lock()
        self._idle: list[_PooledConnection] = []
        self._generation = 0

    def __repr__(self) -> str:
        return "HttpTransport(%r)" % (self.url,)

    # --- configuration --------------------------------------------------------------------

    def set_header(self, name: str, value: str | None) -> None:
        """Send ``name: value`` with every request (a false ``value`` removes the header)."""
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError("header %r is set by the HTTP transport and cannot be changed"
                              % (name,))
        headers = dict(self._headers)  # copy-on-write: calls in flight keep a consistent dict
        if value:
            headers[name] = str(value)
        else:
            headers.pop(name, None)
        self._headers = headers

    # --- the Transport protocol -----------------------------------------------------------

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """POST ``request``; return the reply body.

        A reused keep-alive connection can turn out to have been closed by the server while it
        sat idle (idle timeout, server restart).  Before reuse the pool drops connections that
        already show EOF; the remaining race (the server closes just as we send) shows up as
        ``RemoteDisconnected``, ``BrokenPipeError`` or ``ConnectionResetError`` before a single
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
        pooled = self._checkout()
        if pooled is not None:
            try:
                return self._exchange(pooled, request, deadline, reused=True)
            except _StaleConnection as stale:
                _log.debug("%s: kept-alive connection was closed by the server (%r); "
                           "retrying once on a new connection", self.url, stale.__cause__)
        pooled = self._connect(deadline)
        return self._exchange(pooled, request, deadline, reused=False)

    def retire(self) -> None:
        """The server left the view: the same as ``close()``, which is already gentle."""
        self.close()

    def close(self) -> None:
        """Close every idle connection now; connections in use close when their call ends."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.http.close()

    def __enter__(self) -> "HttpTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- pool -----------------------------------------------------------------------------

    def _checkout(self) -> _PooledConnection | None:
        """The most recently used idle connection that still looks alive, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                pooled = self._idle.pop()
            sock = pooled.http.sock
            if sock is not None and not readable_now(sock):
                return pooled
            # EOF (or unexpected bytes) on an idle connection: the server closed it.
            pooled.http.close()

    def _checkin(self, pooled: _PooledConnection) -> None:
        if pooled.http.sock is None:  # the reply said "Connection: close"
            return
        with self._lock:
            if pooled.generation == self._generation and len(self._idle) < self.pool_size:
                self._idle.append(pooled)
                return
        pooled.http.close()

    def _connect(self, deadline: Deadline) -> _PooledConnection:
        """Open a connection (TCP, then TLS); every failure is a ``ConnectError``."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        timeout = max(deadline.cap(self.connect_timeout) or 0.0, 0.001)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.connect()
        except OSError as error:  # refused, unreachable, DNS, timed out, TLS
            conn.close()
            raise connect_failed(self.url, error, timeout) from error
        with self._lock:
            generation = self._generation
        return _PooledConnection(conn, generation)

    # --- one exchange ---------------------------------------------------------------------

    def _exchange(self, pooled: _PooledConnection, request: bytes, deadline: Deadline,
                  reused: bool) -> bytes:
        """Send on ``pooled`` and read the reply; the connection goes back to the pool only
        after a complete, successful exchange, and is closed after anything else."""
        conn = pooled.http
        # Kept apart from conn.sock: http.client drops that as soon as a reply says
        # "Connection: close", while the reply body is still to be read from this socket.
        sock = conn.sock
        response: http.client.HTTPResponse | None = None
        ok = False
        try:
            try:
                sock.settimeout(deadline.socket_timeout())
            except TimeoutError:
                raise timed_out_unsent(self.url, deadline) from None
            headers = dict(self._headers)
            headers["Content-Type"] = "application/hprose"
            try:
                conn.request("POST", self.target, body=request, headers=headers)
                sock.settimeout(deadline.socket_timeout())
                response = conn.getresponse()
            except _STALE_ERRORS as error:
                if reused:
                    raise _StaleConnection() from error
                raise
            body = self._read_reply(sock, response, deadline)
            ok = True
            return body
        except (_StaleConnection, CallTimeout, TransportError):
            raise
        except (http.client.HTTPException, OSError) as error:
            raise call_failed(self.url, error, deadline, fresh=not reused,
                              what="HTTP call") from error
        finally:
            if ok:
                self._checkin(pooled)
            else:
                if response is not None:
                    response.close()  # it may own the socket (after "Connection: close")
                conn.close()

    def _read_reply(self, sock: socket.socket, response: http.client.HTTPResponse,
                    deadline: Deadline) -> bytes:
        if response.status != 200:
            # hprose's client raises HproseException('%d:%s'); a status is not an hprose
            # reply, so ours is a plain TransportError (sent=True: the server got the request).
            snippet = b""
            try:
                sock.settimeout(deadline.socket_timeout())
                snippet = response.read(200) if response.length != 0 else b""
            except Exception:  # the status alone is the message; the snippet is a courtesy
                pass
            detail = (": " + snippet.decode("utf-8", "replace").strip()) if snippet else ""
            raise TransportError("HTTP %d %s from %s%s" % (response.status, response.reason,
                                                           self.url, detail[:300]),
                                 url=self.url, sent=True)
        declared = response.length
        if declared is not None and declared > self.max_body:
            raise TransportError("reply from %s declares %d bytes, more than max_body=%d; "
                                 "not read" % (self.url, declared, self.max_body), url=self.url)
        chunks: list[bytes] = []
        total = 0
        while True:
            if (declared is not None and total >= declared) or response.isclosed():
                break  # all read (a chunked reply closes itself after its last chunk)
            want = _CHUNK if declared is None else min(_CHUNK, declared - total)
            sock.settimeout(deadline.socket_timeout())
            chunk = response.read(want)
            if not chunk:
                if declared is not None:
                    raise TransportError("connection to %s closed after %d of %d reply bytes"
                                         % (self.url, total, declared), url=self.url)
                break
            total += len(chunk)
            if total > self.max_body:
                raise TransportError("reply from %s exceeds max_body=%d bytes"
                                     % (self.url, self.max_body), url=self.url)
            chunks.append(chunk)
        return b"".join(chunks)


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

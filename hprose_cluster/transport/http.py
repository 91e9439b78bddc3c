"""hprose over HTTP: a client with persistent connections and a threaded server.

hprose 1.4.3 opens a new TCP (and TLS) connection for every call and serves HTTP with a
single-threaded wsgiref server that speaks HTTP/1.0, blocks forever and calls ``exit()`` on
Ctrl-C (WIRE.md, defect 4).  This module keeps the wire format (``POST`` with
``Content-Type: application/hprose``; reply ``200`` with ``Content-Type: text/plain``) and fixes
the rest:

* ``HttpTransport`` keeps HTTP/1.1 keep-alive connections in a small pool per server URL, and
  maps every failure onto the ``hprose_cluster.errors`` tree, saying whether the request may
  have reached the server (``sent``), which is what failover needs to know.
* ``HttpClient`` is a drop-in ``hprose.HttpClient`` on top of it.
* ``HttpServer`` is an ``hprose.HproseHttpService`` served by one thread per connection, with
  keep-alive, request size limits, idle timeouts, HTTPS, and a graceful ``stop()`` that drains.
"""

from __future__ import annotations

import http.client
import io
import itertools
import logging
import re
import select
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any, Mapping

import hprose

from ..errors import CallTimeout, ConfigError, ConnectError, TransportError
from .base import BaseClient
from .listen import open_listener, server_url

__all__ = ["DEFAULT_MAX_BODY", "HttpTransport", "HttpClient", "HttpServer"]

_log = logging.getLogger("hprose_cluster.transport.http")

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"""Largest request (server) or reply (client) body accepted, in bytes."""

_CHUNK = 64 * 1024

# A reused keep-alive connection that fails with one of these before any byte of the reply was
# read was (almost certainly) closed by the server while idle; see HttpTransport.round_trip.
_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                 ConnectionAbortedError)

# Headers the transport owns: the body framing and the hprose content type.
_RESERVED_HEADERS = {"content-type", "content-length", "transfer-encoding"}


def _socket_shutdown(sock: socket.socket | None) -> None:
    """Shut a socket down at the OS level so a thread blocked on it wakes up.

    ``socket.socket.shutdown`` is called unbound on purpose: ``SSLSocket.shutdown`` would also
    drop its TLS object while another thread may still be using it.
    """
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected


def _readable_now(sock: socket.socket) -> bool:
    """True when ``sock`` has something to read right now (for an idle connection: EOF)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


# =============================================================================================
# Client
# =============================================================================================


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

    def round_trip(self, request: bytes, timeout: float | None) -> bytes:
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
        deadline = None if timeout is None else time.monotonic() + timeout
        pooled = self._checkout()
        if pooled is not None:
            try:
                return self._exchange(pooled, request, timeout, deadline, reused=True)
            except _StaleConnection as stale:
                _log.debug("%s: kept-alive connection was closed by the server (%r); "
                           "retrying once on a new connection", self.url, stale.__cause__)
        pooled = self._connect(deadline)
        return self._exchange(pooled, request, timeout, deadline, reused=False)

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
            if sock is not None and not _readable_now(sock):
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

    def _connect(self, deadline: float | None) -> _PooledConnection:
        """Open a connection (TCP, then TLS); every failure is a ``ConnectError``."""
        timeout = self.connect_timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallTimeout("call to %s timed out before it was sent" % (self.url,),
                                  url=self.url, sent=False)
            timeout = min(timeout, remaining)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as error:
            conn.close()
            raise ConnectError("TLS certificate verification failed for %s: %s"
                               % (self.url, error.verify_message or error), url=self.url) from error
        except ssl.SSLError as error:
            conn.close()
            raise ConnectError("TLS handshake with %s failed: %s" % (self.url, error),
                               url=self.url) from error
        except TimeoutError as error:
            conn.close()
            # The request never left, so this is a ConnectError (safe to try elsewhere),
            # not a CallTimeout.
            raise ConnectError("cannot connect to %s: timed out after %.3gs"
                               % (self.url, timeout), url=self.url) from error
        except OSError as error:  # refused, unreachable, DNS (socket.gaierror)
            conn.close()
            raise ConnectError("cannot connect to %s: %s" % (self.url, error),
                               url=self.url) from error
        with self._lock:
            generation = self._generation
        return _PooledConnection(conn, generation)

    # --- one exchange ---------------------------------------------------------------------

    def _set_timeout(self, sock: socket.socket, deadline: float | None, sent: bool) -> None:
        """Give the next socket operation what is left of the call's time."""
        if deadline is None:
            sock.settimeout(None)
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if sent:
                raise TimeoutError("deadline passed")
            raise CallTimeout("call to %s timed out before it was sent" % (self.url,),
                              url=self.url, sent=False)
        sock.settimeout(remaining)

    def _exchange(self, pooled: _PooledConnection, request: bytes, timeout: float | None,
                  deadline: float | None, reused: bool) -> bytes:
        """Send on ``pooled`` and read the reply; the connection goes back to the pool only
        after a complete, successful exchange, and is closed after anything else."""
        conn = pooled.http
        # Kept apart from conn.sock: http.client drops that as soon as a reply says
        # "Connection: close", while the reply body is still to be read from this socket.
        sock = conn.sock
        response: http.client.HTTPResponse | None = None
        ok = False
        try:
            self._set_timeout(sock, deadline, sent=False)
            headers = dict(self._headers)
            headers["Content-Type"] = "application/hprose"
            try:
                conn.request("POST", self.target, body=request, headers=headers)
                self._set_timeout(sock, deadline, sent=True)
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
        except TimeoutError as error:
            raise CallTimeout("no reply from %s within the call's timeout (%ss)"
                              % (self.url, timeout), url=self.url) from error
        except ssl.SSLError as error:
            reason = error.reason or ""
            if not reused and "ALERT" in reason and ("CERTIFICATE" in reason or "_CA" in reason):
                # TLS 1.3: the server refuses our client certificate after our side of the
                # handshake is done, so its alert arrives with the first read.  It never
                # accepted the connection: the request did not execute anywhere.
                raise ConnectError("%s refused the TLS handshake (%s): check the client "
                                   "certificate in ssl_context" % (self.url, reason),
                                   url=self.url) from error
            raise TransportError("HTTP call to %s failed: %s: %s"
                                 % (self.url, type(error).__name__, error),
                                 url=self.url, sent=True) from error
        except (http.client.HTTPException, OSError) as error:
            raise TransportError("HTTP call to %s failed: %s: %s"
                                 % (self.url, type(error).__name__, error),
                                 url=self.url, sent=True) from error
        finally:
            if ok:
                self._checkin(pooled)
            else:
                if response is not None:
                    response.close()  # it may own the socket (after "Connection: close")
                conn.close()

    def _read_reply(self, sock: socket.socket, response: http.client.HTTPResponse,
                    deadline: float | None) -> bytes:
        if response.status != 200:
            # hprose's client raises HproseException('%d:%s'); a status is not an hprose
            # reply, so ours is a plain TransportError (sent=True: the server got the request).
            snippet = b""
            try:
                self._set_timeout(sock, deadline, sent=True)
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
            self._set_timeout(sock, deadline, sent=True)
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

    def _round_trip(self, request: bytes, timeout: float | None, **options: Any) -> bytes:
        # Options such as idempotent= matter to ClusterClient, not to a single connection.
        return self._transport.round_trip(request, timeout)

    def close(self) -> None:
        self._transport.close()


# =============================================================================================
# Server
# =============================================================================================


# What an HTTP request can start with: a method's token characters, or the empty line
# RFC 9112 lets a client send before the request line.
_REQUEST_START = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           b"abcdefghijklmnopqrstuvwxyz\r\n")


class _Connection:
    """Server-side bookkeeping for one accepted connection."""

    __slots__ = ("sock", "address", "busy", "shut", "served", "thread", "write_lock",
                 "abandoned")

    def __init__(self, sock: socket.socket, address: Any):
        self.sock = sock
        self.address = address
        self.busy = False  # True while a request on it is being executed and answered
        self.shut = False  # shut down by stop() while idle: never execute a request from it
        self.served = 0  # requests answered on it
        self.thread: threading.Thread | None = None
        # Replies are written under write_lock; once stop() has given up on a running request
        # (drain timeout) and answered 503 itself, ``abandoned`` keeps the late reply out.
        self.write_lock = threading.RLock()
        self.abandoned = False


_in_handler = threading.local()  # set in connection threads; lets stop() skip joining itself

_DIGITS = re.compile(r"[0-9]{1,20}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNKED = "chunked"  # _body_framing()'s answer for a chunked body


_ABANDONED_BODY = b"server stopped while this request was running; no result\n"
_ABANDONED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
              % (len(_ABANDONED_BODY), _ABANDONED_BODY))


def _abandon(conn: _Connection) -> None:
    """Answer 503 for a request still running when the drain timeout ends.

    Closing the connection silently would look, to a client on a kept-alive connection, like
    a server closing an idle connection, and the client would retry a request that did run.
    A status line first makes the failure a plain "sent" error.  If the handler is writing
    its reply right now (write_lock taken), that reply is on its way and is left alone.
    """
    if not conn.write_lock.acquire(blocking=False):
        return
    try:
        if conn.busy and not conn.abandoned:
            conn.abandoned = True
            conn.sock.settimeout(0.5)
            conn.sock.sendall(_ABANDONED)
    except (OSError, ValueError):
        pass
    finally:
        conn.write_lock.release()


class _Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, every request answered with a Content-Length."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so even a garbled request line gets a status line
    server_version = "hprose-cluster"
    sys_version = ""
    disable_nagle_algorithm = True
    server: "HttpServer"

    def __init__(self, sock: socket.socket, address: Any, server: "HttpServer",
                 conn: _Connection):
        self.conn = conn
        super().__init__(sock, address, server)  # runs setup(), handle(), finish()

    def setup(self) -> None:
        super().setup()
        # an idle keep-alive connection is closed after idle_timeout
        self.connection.settimeout(self.server.idle_timeout)

    # --- the connection loop --------------------------------------------------------------

    def handle(self) -> None:
        self.close_connection = True
        while self.server._connection_idle(self.conn):
            try:
                self.handle_one_request()
            except TimeoutError:
                _log.debug("%s: connection idle or stalled for %ss; closed",
                           self.address_string(), self.server.idle_timeout)
                return
            except OSError as error:  # reset, broken pipe, TLS error: nothing to answer
                _log.debug("%s: connection error: %r", self.address_string(), error)
                return
            if self.close_connection:
                return

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.command = ""
        self.request_version = self.default_request_version
        first = self.rfile.peek(1)[:1]  # type: ignore[attr-defined]  # a BufferedReader
        if first and first[0] not in _REQUEST_START:
            # Not HTTP (a hprose TCP frame starts with a zero byte): answer now rather than
            # wait for the line end that never comes, so the peer learns at once.
            self.requestline = ""
            self.send_error(400, "Not an HTTP request")
            self._linger()
            return
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return  # the client closed the connection
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.send_error(414)
            self._linger()
            return
        if len(self.raw_requestline.split()) != 3:
            # HTTP/0.9 ("GET /") and junk: refuse rather than guess.
            self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
            self.send_error(400, "Bad request line")
            self._linger()
            return
        if not self.parse_request():
            self._linger()
            return  # parse_request answered (400, 431, 505, ...)
        if not self.server._request_started(self.conn):
            return  # stopping: close without a reply; the request was not executed
        try:
            self._serve_request()
        finally:
            self.server._request_finished(self.conn)

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before inviting the client to send it."""
        if self._body_framing() is None:
            return False
        return super().handle_expect_100()

    # --- one request ----------------------------------------------------------------------

    def _body_framing(self) -> int | str | None:
        """The request body length, ``_CHUNKED``, or None after answering 400/411/413/501."""
        codings = self.headers.get_all("Transfer-Encoding")
        if codings:
            if self.headers.get("Content-Length") is not None:
                # two framings: a proxy in front may have read the other one (smuggling)
                self.send_error(400, "Both Content-Length and Transfer-Encoding")
                return None
            if [c.strip().lower() for c in ",".join(codings).split(",")] != [_CHUNKED]:
                self.send_error(501, "Unsupported transfer coding",
                                "Only Transfer-Encoding: chunked is accepted.")
                return None
            return _CHUNKED
        values = self.headers.get_all("Content-Length")
        if not values:
            if self.command == "POST":
                self.send_error(411, "Length Required")
                return None
            return 0
        if len(set(v.strip() for v in values)) != 1 or not _DIGITS.fullmatch(values[0].strip()):
            self.send_error(400, "Bad Content-Length")
            return None
        length = int(values[0])
        if length > self.server.max_body:
            self.send_error(413, "Payload Too Large",
                            "The body of %d bytes is larger than the limit of %d bytes."
                            % (length, self.server.max_body))
            return None
        return length

    def _serve_request(self) -> None:
        if self.command not in ("POST", "GET", "HEAD", "OPTIONS"):
            self.send_error(501, "Unsupported method (%r)" % self.command)
            self._linger()
            return
        framing = self._body_framing()
        if framing is None:
            self._linger()  # the body is left unread: this connection is finished
            return
        if framing == _CHUNKED:
            body = self._read_chunked_body()
        else:
            assert isinstance(framing, int)
            body = self._read_body(framing)
        if body is None:
            return
        try:
            status, headers, parts = self.server.handle(self._environ(body))
            code_text, _, reason = str(status).partition(" ")
            code = int(code_text)
            payload = b"".join(p.encode("utf-8") if isinstance(p, str) else bytes(p)
                               for p in parts)
        except Exception:
            _log.exception("%s: %s %s failed in the hprose service", self.address_string(),
                           self.command, self.path)
            self.send_error(500)
            return
        self._send(code, reason, headers, payload)

    def _read_body(self, length: int) -> bytes | None:
        """Read exactly ``length`` bytes in chunks, so memory follows what actually arrives."""
        chunks = []
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                _log.debug("%s: body ended after %d of %d bytes", self.address_string(),
                           length - remaining, length)
                self.close_connection = True
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_chunked_body(self) -> bytes | None:
        """Read a chunked body (RFC 9112 7.1) of at most ``max_body`` bytes.  None after
        answering 400/413, or when the client went away; the connection is then finished."""
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            if not line:
                self.close_connection = True
                return None
            size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                self.send_error(400, "Bad chunk size line")
                self._linger()
                return None
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > self.server.max_body:
                self.send_error(413, "Payload Too Large",
                                "The chunked body is larger than the limit of %d bytes."
                                % self.server.max_body)
                self._linger()
                return None
            data = self._read_body(size)
            if data is None:
                return None
            chunks.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.send_error(400, "Chunk not followed by CRLF")
                self._linger()
                return None
        for _ in range(64):  # trailer fields, ignored
            line = self.rfile.readline(8194)
            if not line:
                self.close_connection = True
                return None
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not line.endswith(b"\n"):
                break
        self.send_error(400, "Bad or too many trailer fields")
        self._linger()
        return None

    def _environ(self, body: bytes) -> dict[str, Any]:
        """A WSGI-style environ: what HproseHttpService.handle reads and what hprose functions
        with a ``context`` argument receive."""
        path, _, query = self.path.partition("?")
        host, port = self.server.address or ("", 0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.server.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "hprose_cluster.server": self.server,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = environ[key] + "," + value if key in environ else value
        return environ

    def _send(self, code: int, reason: str, headers: list[tuple[str, str]],
              payload: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall)."""
        if self.server._stopping:
            self.close_connection = True
        lines = ["%s %d %s" % (self.protocol_version, code, reason or "OK"),
                 "Server: " + self.version_string(),
                 "Date: " + self.date_time_string()]
        for name, value in headers:
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            lines.append("%s: %s" % (name, value))
        lines.append("Content-Length: %d" % len(payload))
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":  # it asked for keep-alive; say we agree
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        with self.conn.write_lock:
            if self.conn.abandoned:
                self.close_connection = True
                return
            self.wfile.write(head if self.command == "HEAD" else head + payload)
        self.log_request(code, len(payload))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        with self.conn.write_lock:
            if self.conn.abandoned:
                self.close_connection = True
                return
            super().send_error(code, message, explain)

    def _linger(self) -> None:
        """Close politely after an error reply sent without reading the request body.

        Closing a socket with unread input makes the kernel send RST, and the client may then
        lose our error reply.  So: stop writing, and discard (a bounded amount of) input for a
        moment, without ever holding it in memory.
        """
        self.close_connection = True
        try:
            self.wfile.flush()
            socket.socket.shutdown(self.connection, socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            discarded = 0
            while discarded < 4 * 1024 * 1024 and time.monotonic() < deadline:
                data = self.connection.recv(_CHUNK)
                if not data:
                    break
                discarded += len(data)
        except (OSError, ValueError):
            pass

    def version_string(self) -> str:
        return self.server_version

    # --- logging: never to stderr ---------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("%s %s", self.address_string(), format % args)


class HttpServer(hprose.HproseHttpService):
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
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._in_flight = 0
        self._serving = False
        self._stopping = False
        self._stop_called = False
        self._stopped = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()  # no accept loop is running
        self._serve_thread: threading.Thread | None = None
        self._signalled: int | None = None
        self._sequence = itertools.count(1)

    # --- the interface ClusterServer relies on --------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """``<scheme>://host:port/`` of the bound socket (IPv6 hosts in brackets)."""
        if self.address is None:
            raise RuntimeError("HttpServer is not listening yet; call listen() or start()")
        return server_url(self.scheme, self.address[0], self.address[1], "/")

    def _name(self) -> str:
        return self.url if self.address is not None else "%s:%s" % (self.host, self.port)

    @property
    def in_flight(self) -> int:
        """How many requests are being executed right now."""
        return self._in_flight

    def listen(self) -> None:
        """Bind and listen (once); afterwards ``self.address`` holds the real (host, port)."""
        with self._lock:
            if self._listener is not None:
                return
            if self._stop_called:
                raise RuntimeError("HttpServer was stopped; create a new one")
            sock = open_listener(self.host, self.port)
            self._listener = sock
            self.address = tuple(sock.getsockname()[:2])  # type: ignore[assignment]
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        _log.info("listening on %s", self.url)

    def start(self, block: bool = True) -> None:
        """Listen, run ``_on_listening()``, then serve until ``stop()``.

        ``block=True`` serves in the calling thread; in the main thread SIGTERM and SIGINT
        (Ctrl-C) then stop the server gracefully and ``start()`` returns.  ``block=False``
        serves on a daemon thread and returns at once.
        """
        self.listen()
        with self._lock:
            if self._stop_called:
                raise RuntimeError("HttpServer was stopped; create a new one")
            if self._serving:
                raise RuntimeError("HttpServer is already serving")
            self._serving = True
        if block:
            self._serve_blocking()
            return
        self._call_on_listening()
        if self._loop_starting():
            thread = threading.Thread(target=self._serve_loop, daemon=True,
                                      name="hprose-cluster-http-serve-%s" % self.url)
            self._serve_thread = thread
            thread.start()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop gracefully: ``_before_stop()``, stop accepting, let running requests finish
        (up to ``drain_timeout`` seconds), close every connection, join every thread.

        Idempotent; a second call waits for the first to finish.
        """
        with self._lock:
            first = not self._stop_called
            self._stop_called = True
        if not first:
            if not getattr(_in_handler, "active", False):
                self._stopped.wait()
            return
        try:
            self._stop(drain_timeout)
        finally:
            self._stopped.set()

    def close(self) -> None:
        """Same as ``stop()``."""
        self.stop()

    def __enter__(self) -> "HttpServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _on_listening(self) -> None:
        """Hook: the socket listens and nothing is served yet (ClusterServer registers)."""

    def _before_stop(self) -> None:
        """Hook: first thing in stop() (ClusterServer deregisters)."""

    # --- serving --------------------------------------------------------------------------

    def _call_on_listening(self) -> None:
        """Run the hook; if it fails (say, etcd registration), stop and re-raise."""
        try:
            self._on_listening()
        except BaseException:
            self.stop(drain_timeout=0)
            raise

    def _loop_starting(self) -> bool:
        """Mark the accept loop as running, unless stop() came first."""
        with self._lock:
            if self._stopping:
                return False
            self._loop_done.clear()
            return True

    def _serve_blocking(self) -> None:
        """Serve in this thread.  In the main thread SIGINT/SIGTERM handlers are installed
        *before* ``_on_listening()``, so a signal during registration still ends in a graceful
        stop (and deregistration) rather than the default abrupt exit."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[signum] = signal.signal(signum, self._on_signal)
                except (ValueError, OSError):  # not the main interpreter, or not supported
                    pass
        try:
            self._call_on_listening()
            try:
                if self._loop_starting():
                    self._serve_loop()
            except KeyboardInterrupt:  # SIGINT arrived before our handler was installed
                _log.info("interrupted; stopping %s", self.url)
            finally:
                self.stop()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Only set a flag and wake the loop: stop() takes locks and joins threads, which a
        signal handler interrupting arbitrary code must not do."""
        self._signalled = signum
        self._wake()

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass  # full (already woken) or closed (already stopped)

    def _serve_loop(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            assert self._listener is not None and self._wake_r is not None
            selector.register(self._listener, selectors.EVENT_READ, "accept")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping and self._signalled is None:
                for key, _ in selector.select(timeout=1.0):
                    if key.data == "wake":
                        try:
                            while self._wake_r.recv(512):
                                pass
                        except OSError:
                            pass
                    elif not self._stopping:
                        self._accept()
            if self._signalled is not None:
                _log.info("signal %d received; stopping %s", self._signalled, self.url)
        finally:
            selector.close()
            self._loop_done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # e.g. EMFILE: back off instead of spinning
            if not self._stopping:
                _log.warning("accept on %s failed: %s", self._name(), error)
                time.sleep(0.05)
            return
        sock.setblocking(True)
        conn = _Connection(sock, address)
        with self._lock:
            if self._stopping:
                sock.close()
                return
            conn.thread = threading.Thread(
                target=self._run_connection, args=(conn,), daemon=True,
                name="hprose-cluster-http-conn-%d" % next(self._sequence))
            self._connections.add(conn)
        conn.thread.start()

    def _run_connection(self, conn: _Connection) -> None:
        """The body of a connection thread; no exception leaves it."""
        _in_handler.active = True
        _in_handler.conn = conn
        peer = "%s:%s" % tuple(conn.address[:2])
        try:
            conn.sock.settimeout(self.idle_timeout)
            if self.ssl_context is not None:
                tls = self.ssl_context.wrap_socket(conn.sock, server_side=True,
                                                   do_handshake_on_connect=False)
                with self._lock:
                    conn.sock = tls
                    shut = conn.shut
                if shut:
                    return
                try:
                    tls.do_handshake()
                except (ssl.SSLError, OSError) as error:
                    _log.info("TLS handshake with %s failed: %s", peer, error)
                    return
            _Handler(conn.sock, conn.address, self, conn)
        except OSError as error:
            _log.debug("connection from %s ended: %r", peer, error)
        except Exception:
            _log.exception("connection from %s failed", peer)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self._lock:
                self._connections.discard(conn)
                self._changed.notify_all()

    # --- state shared by connection threads and stop() ------------------------------------

    def _connection_idle(self, conn: _Connection) -> bool:
        """A connection waits for its next request; False means close it.

        While stopping, a connection that has answered requests is closed; a new one may still
        bring its first request, until stop() shuts it down.
        """
        with self._lock:
            conn.busy = False
            return not conn.shut and not (self._stopping and conn.served)

    def _request_started(self, conn: _Connection) -> bool:
        """A complete request head arrived; False means drop it unexecuted.

        Dropped only when stop() already shut the connection down: the reply could not be
        sent, and a client retrying a silently closed kept-alive connection must be able to
        trust that the request did not run.  A request that arrives while stopping, on a
        connection not shut yet, is executed and drained like any other.
        """
        with self._lock:
            if conn.shut:
                return False
            conn.busy = True
            self._in_flight += 1
            return True

    def _request_finished(self, conn: _Connection) -> None:
        with self._lock:
            conn.served += 1
            self._in_flight -= 1
            self._changed.notify_all()

    def _stop(self, drain_timeout: float) -> None:
        try:
            self._before_stop()
        except Exception:
            _log.exception("_before_stop() failed; stopping anyway")
        deadline = time.monotonic() + max(drain_timeout, 0.0)
        with self._lock:
            self._stopping = True  # the accept loop ends; answered connections close
        self._wake()
        current = threading.current_thread()
        if self._serve_thread is not None and self._serve_thread is not current:
            self._serve_thread.join()
        else:
            self._loop_done.wait()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        # Only now close the idle connections: a client that retries a request on a new
        # connection then gets a clean "connection refused" (ConnectError, sent=False), not a
        # connection accepted into a backlog that is about to be reset.
        with self._lock:
            for conn in self._connections:
                if not conn.busy:  # idle keep-alive or handshaking: nothing to finish
                    conn.shut = True
                    _socket_shutdown(conn.sock)
        # Drain: requests being executed finish and are answered (with Connection: close).
        own = 1 if getattr(_in_handler, "active", False) else 0
        with self._lock:
            while self._in_flight > own:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _log.warning("%s: %d request(s) still running after %ss; closing their "
                                 "connections", self._name(), self._in_flight - own, drain_timeout)
                    break
                self._changed.wait(remaining)
            mine = getattr(_in_handler, "conn", None)
            for conn in self._connections:
                if conn is mine:  # stop() called by a service function: let it answer
                    continue
                if conn.busy:
                    _abandon(conn)
                conn.shut = True
                _socket_shutdown(conn.sock)
            threads = [c.thread for c in self._connections if c.thread is not None]
        join_deadline = max(deadline, time.monotonic()) + 1.0
        for thread in threads:
            if thread is not current:
                thread.join(max(join_deadline - time.monotonic(), 0.01))
        left = [t.name for t in threads if t.is_alive() and t is not current]
        if left:
            _log.warning("%s: threads still running after stop(): %s", self._name(), left)
        _log.info("stopped %s", self._name())

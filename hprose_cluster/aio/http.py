"""hprose over keep-alive HTTP/1.1 on asyncio streams.

The wire is the one of ``transport.http``: ``POST`` with ``Content-Type: application/hprose``,
a ``200`` reply whose body is the hprose reply.  An HTTP/1.1 connection carries one exchange at
a time, so calls in flight use as many connections, up to ``connections`` at once (then a call
waits for one, within its deadline; a call that runs out of time there was never sent).
Finished connections are kept for the next call.

A call cancelled in the middle of its exchange closes that connection (half a request or an
unread reply cannot be reused); no other call used it.  A kept connection the server closed
while idle is noticed before reuse, and the remaining race (the server closes it just as we
send, before a byte of reply) repeats the call once on a new connection, as the blocking
``HttpTransport`` does and for the same reason (a server closes keep-alive connections only
between requests).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Mapping

from ..deadline import Deadline
from ..errors import CallTimeout, ConfigError, ConnectError, TransportError
from ..transport.errors import call_failed, timed_out_unsent
from ..transport.http.url import parse_http_url
from .base import connect_error, loop_deadline, remaining, retired_error

log = logging.getLogger("hprose_cluster.aio.http")

__all__ = ["AsyncHttpTransport"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
_MAX_HEAD = 64 * 1024
_RESERVED = {"content-type", "content-length", "transfer-encoding", "connection", "host"}


class _Stale(Exception):
    """A kept connection turned out closed by the server before it sent a byte of reply."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def looks_alive(self) -> bool:
        # EOF or unexpected bytes on an idle connection: the server closed it (or misbehaves)
        reader = self.reader
        return not (self.writer.is_closing() or reader.at_eof() or reader.exception() is not None
                    or len(getattr(reader, "_buffer", b"")))

    def abort(self) -> None:
        self.writer.transport.abort()


class AsyncHttpTransport:
    """hprose HTTP(S) to one server on asyncio; implements ``aio.base.AsyncTransport``.

    ``connections``: most connections open at once (default 32); ``ssl_context`` for
    ``https://`` (default: ``ssl.create_default_context()``, verifying against the system
    store); ``headers`` go with every request; replies over ``max_body`` bytes are refused.
    Use from one event loop.
    """

    def __init__(self, url: str, *, connections: int = 32, connect_timeout: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None,
                 headers: Mapping[str, str] | None = None, max_body: int = DEFAULT_MAX_BODY):
        self.url = url
        scheme, self.host, self.port, self.target = parse_http_url(url)
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ConfigError("connections for %s must be a whole number >= 1, not %r"
                              % (url, connections))
        if not connect_timeout or connect_timeout <= 0:
            raise ConfigError("connect_timeout must be positive, not %r (for %s)"
                              % (connect_timeout, url))
        self.scheme = scheme
        self.connect_timeout = float(connect_timeout)
        self.max_body = max_body
        self.ssl_context = ssl_context
        if scheme == "https" and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        host = "[%s]" % self.host if ":" in self.host else self.host
        default_port = 443 if scheme == "https" else 80
        lines = ["Host: %s" % (host if self.port == default_port else "%s:%d" % (host, self.port)),
                 "Content-Type: application/hprose"]
        for name, value in (headers or {}).items():
            if name.lower() in _RESERVED:
                raise ConfigError("header %r is set by the HTTP transport and cannot be changed"
                                  % (name,))
            lines.append("%s: %s" % (name, value))
        self._head = ("POST %s HTTP/1.1\r\n%s\r\n" % (self.target, "\r\n".join(lines))).encode("latin-1")
        self._limit = connections
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()
        self._generation = 0
        self._retired = False

    def __repr__(self) -> str:
        return "AsyncHttpTransport(%r)" % (self.url,)

    async def round_trip(self, request: bytes, deadline: Deadline | None = None) -> bytes:
        if deadline is None:
            deadline = Deadline(None)
        at = loop_deadline(deadline)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        try:
            async with asyncio.timeout_at(at):
                await self._slots.acquire()
        except TimeoutError:
            raise timed_out_unsent(self.url, deadline, "waiting for one of its %d connections"
                                   % self._limit) from None
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.looks_alive():
                    try:
                        return await self._exchange(conn, request, at, deadline, True)
                    except _Stale as stale:
                        log.debug("%s: kept-alive connection was closed by the server (%r); "
                                  "retrying once on a new connection", self.url, stale.__cause__)
                        break
                self._discard(conn)
            conn = await self._connect(at, deadline)
            return await self._exchange(conn, request, at, deadline, False)
        finally:
            self._slots.release()

    def retire(self) -> None:
        self._retired = True

    @property
    def in_flight(self) -> int:
        """Connections in use by a call (open and not idle)."""
        return len(self._open) - len(self._idle)

    async def aclose(self) -> None:
        """Close every connection and wait until the sockets are closed."""
        self._generation += 1
        conns = list(self._open)
        self._idle.clear()
        for conn in conns:
            self._discard(conn)
        for conn in conns:
            try:
                await conn.writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    # --- connections ----------------------------------------------------------------------

    def _discard(self, conn: _Conn) -> None:
        self._open.discard(conn)
        conn.abort()

    async def _connect(self, at: float | None, deadline: Deadline) -> _Conn:
        if self._retired:
            raise retired_error(self.url)
        limit = self.connect_timeout
        left = remaining(at, asyncio.get_running_loop())
        if left is not None:
            if left <= 0:
                raise timed_out_unsent(self.url, deadline)
            limit = min(limit, left)
        options: dict[str, Any] = {"limit": _MAX_HEAD}
        if self.scheme == "https":
            options["ssl"] = self.ssl_context
            options["server_hostname"] = self.host
        generation = self._generation
        try:
            async with asyncio.timeout(limit):
                reader, writer = await asyncio.open_connection(self.host, self.port, **options)
        except (OSError, ssl.SSLError, TimeoutError) as error:  # refused, DNS, TLS, slow
            raise connect_error(self.url, error, limit) from error
        conn = _Conn(reader, writer)
        if self._retired:  # it left while we were connecting: nothing sent yet
            conn.abort()
            raise retired_error(self.url)
        if generation != self._generation:
            conn.abort()
            raise ConnectError("HTTP transport to %s was closed while connecting" % self.url,
                               url=self.url)
        self._open.add(conn)
        return conn

    # --- one exchange ---------------------------------------------------------------------

    async def _exchange(self, conn: _Conn, request: bytes, at: float | None,
                        deadline: Deadline, reused: bool) -> bytes:
        """Send on ``conn`` and read the reply; the connection is kept only after a complete
        exchange, and closed after anything else (an error, a timeout, a cancellation)."""
        ok = False
        keep = False
        got_any = False
        try:
            conn.writer.write(b"%sContent-Length: %d\r\n\r\n" % (self._head, len(request)))
            conn.writer.write(request)
            async with asyncio.timeout_at(at):
                try:
                    await conn.writer.drain()
                    head = await conn.reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError) as error:
                    partial = getattr(error, "partial", b"")
                    if reused and not partial:
                        raise _Stale() from error
                    raise
                got_any = True
                status, reason, headers, keep = _parse_head(head, self.url)
                body = await self._read_body(conn.reader, headers, keep)
            if status != 200:
                detail = body[:200].decode("utf-8", "replace").strip()
                raise TransportError("HTTP %d %s from %s%s" % (status, reason, self.url,
                                                               (": " + detail) if detail else ""),
                                     url=self.url, sent=True)
            ok = True
            return body
        except (_Stale, TransportError):
            raise
        except TimeoutError as error:
            raise CallTimeout("HTTP call to %s timed out after %s"
                              % (self.url, deadline.describe()), url=self.url) from error
        except asyncio.LimitOverrunError as error:
            raise TransportError("reply headers from %s are over %d bytes"
                                 % (self.url, _MAX_HEAD), url=self.url, sent=True) from error
        except asyncio.IncompleteReadError as error:
            raise TransportError("HTTP call to %s failed: the server closed the connection%s"
                                 % (self.url, "" if got_any else " before replying"),
                                 url=self.url, sent=True) from error
        except (OSError, ssl.SSLError) as error:  # a refused client certificate: ConnectError
            raise call_failed(self.url, error, deadline, fresh=not reused,
                              what="HTTP call") from error
        finally:
            if ok and keep:
                self._idle.append(conn)
            else:
                self._discard(conn)

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str],
                         keep: bool) -> bytes:
        coding = headers.get("transfer-encoding", "").lower()
        if coding and coding != "identity":
            if coding.split(",")[-1].strip() != "chunked":
                raise TransportError("reply from %s has transfer coding %r"
                                     % (self.url, coding), url=self.url, sent=True)
            return await self._read_chunked(reader)
        length_text = headers.get("content-length")
        if length_text is None:
            if keep:
                raise TransportError("reply from %s has neither Content-Length nor chunks"
                                     % (self.url,), url=self.url, sent=True)
            data = await reader.read(self.max_body + 1)  # read to EOF (Connection: close)
            chunks = [data]
            total = len(data)
            while data and total <= self.max_body:
                data = await reader.read(self.max_body + 1 - total)
                chunks.append(data)
                total += len(data)
            body = b"".join(chunks)
            self._check_size(len(body))
            return body
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            raise TransportError("reply from %s has a bad Content-Length %r"
                                 % (self.url, length_text), url=self.url, sent=True) from None
        if length > self.max_body:
            raise TransportError("reply from %s declares %d bytes, more than max_body=%d; not "
                                 "read" % (self.url, length, self.max_body), url=self.url)
        return await reader.readexactly(length)

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise TransportError("reply from %s has a bad chunk size %r"
                                     % (self.url, line[:40]), url=self.url) from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            total += size
            self._check_size(total)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def _check_size(self, size: int) -> None:
        if size > self.max_body:
            raise TransportError("reply from %s exceeds max_body=%d bytes"
                                 % (self.url, self.max_body), url=self.url)


def _parse_head(head: bytes, url: str) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (lower-case names) and whether the connection may be reused."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        version, status = parts[0], int(parts[1])
    except (IndexError, ValueError):
        raise TransportError("reply from %s is not HTTP: %r" % (url, lines[0][:80]),
                             url=url) from None
    if not version.startswith("HTTP/1."):
        raise TransportError("reply from %s is not HTTP/1.x: %r" % (url, lines[0][:80]), url=url)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise TransportError("reply from %s has a bad header line %r" % (url, line[:80]),
                                 url=url)
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    return status, parts[2] if len(parts) > 2 else "", headers, keep

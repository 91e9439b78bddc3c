"""The hprose TCP transport, client side (``tcp://``, ``tcp4://``, ``tcp6://``).

PyPI hprose 1.4.3 has no TCP transport; Go hprose servers and clients speak it by default.
Framing is in ``transport.framing``: half duplex (length word, body; one request in flight per
connection; what Go clients send) and full duplex (``length | 0x80000000``, a request id, body;
many requests in flight on one connection, answered in any order).

``TcpTransport`` moves bytes (a bounded pool of half-duplex connections, or one shared
full-duplex connection with a reader thread), ``TcpClient`` is the hprose client on top.

TLS: give ``ssl_context`` (the URL scheme may stay ``tcp``, as in Go).  A TLS connection that
is read and written by different threads goes through ``streams.SslIo``.

Failures map onto ``hprose_cluster.errors`` (``transport.errors``): a connect that fails is
``ConnectError`` (``sent=False``), no reply in time is ``CallTimeout``, a connection that
breaks under a call is ``TransportError(sent=True)``, a bad or oversized reply is
``FrameError``.  Every message names the URL.  Only the calls on a broken connection fail;
the next call opens a new one.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from typing import Any

from ...deadline import Deadline, deadline_after, deadline_at
from ...errors import CallTimeout, ConfigError, ConnectError, FrameError, TransportError
from .. import framing, streams
from ..base import TransportClient
from ..errors import call_failed, connect_error, timed_out_unsent
from .duplex import DeadConnection, FullDuplexConnection
from .pool import ConnectionPool
from .stale import STALE_CHECK_AFTER, has_pending_input, refused_unread
from .url import TLS_SCHEMES, parse_tcp_url

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["TcpTransport", "TcpClient", "parse_tcp_url"]

_clock = time.monotonic
_pack_word = struct.Struct(">I").pack
_word_from = int.from_bytes
_DONTWAIT = socket.MSG_DONTWAIT
_MAX_RECV = 1024 * 1024
_RECV_CHUNK = streams.RECV_CHUNK
_MARGIN = streams.KERNEL_TIMEOUT_MARGIN


DEFAULT_POOL_SIZE = 16
"""Default cap of half-duplex connections per server.  Connections are opened only as calls
find none free, so the pool grows to the number of concurrent callers, up to this cap (a pool
of ``os.cpu_count()`` made 8 threads queue for 2 connections: p99 36 ms instead of 2.4 ms)."""


class TcpTransport:
    """The hprose TCP wire for one server URL; implements ``transport.base.Transport``.

    Half duplex (default, what Go speaks): up to ``pool_size`` connections (default
    ``DEFAULT_POOL_SIZE``, opened as concurrent calls need them), each carrying one request at
    a time and reused; callers wait for a free one in arrival order when all are busy.  A call that
    times out discards its connection, since its late reply would answer the next request.

    ``full_duplex=True``: one shared connection carries every call with a request id; a reader
    thread hands each reply to its caller, in whatever order they come.

    TLS: a ``tcps://``, ``tcp4s://``, ``tcp6s://`` or ``tls://`` URL always uses TLS (with
    ``ssl_context``, else ``ssl.create_default_context()``); a plain ``tcp://`` URL uses TLS
    when ``ssl_context`` is given, as Go's TCP client does with a TLS config.

    Thread-safe.  ``close()`` closes every socket and joins the reader thread; a later call
    opens new connections.
    """

    def __init__(self, url: str, *, full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0,
                 max_frame: int = framing.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        self.scheme, self.host, self.port, self.family = self._parse_url(url)
        self.url = url
        self.full_duplex = full_duplex
        size = DEFAULT_POOL_SIZE if pool_size is None else int(pool_size)
        if size < 1:
            raise ConfigError("pool_size for %s must be at least 1, not %r" % (url, pool_size))
        if max_frame < 1 or max_frame > framing.LENGTH_MASK:
            raise ConfigError("max_frame for %s must be in 1..%d" % (url, framing.LENGTH_MASK))
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        if ssl_context is None and self.scheme in TLS_SCHEMES:
            ssl_context = ssl.create_default_context()
        self.ssl_context = ssl_context
        self.pool = ConnectionPool(url, size, self._connect, has_pending_input,
                                   STALE_CHECK_AFTER)
        self._fd_lock = threading.Lock()
        self._fd_conn: FullDuplexConnection | None = None
        self._retired = False

    @property
    def pool_size(self) -> int:
        return self.pool.size

    def __repr__(self) -> str:
        mode = "full" if self.full_duplex else "half"
        return "TcpTransport(%r, %s duplex)" % (self.url, mode)

    # --- public ---------------------------------------------------------------------------

    def call(self, request: bytes, timeout: float | None,
             deadline: Deadline | None = None) -> bytes:
        """``round_trip`` within ``timeout`` seconds from now (None: no limit) when no
        ``deadline`` is given: the plain call of a ``TcpClient``, made without extra steps."""
        if self.full_duplex:
            conn = self._fd_conn
            if conn is not None and not conn.dead:
                try:
                    return conn.call(request, deadline, timeout)
                except DeadConnection as dead:  # it broke before our request went out (or
                    # was read): on the next connection the call ends when it would have here
                    deadline = deadline or deadline_at(timeout, dead.at)
            return self._full_duplex_round_trip(request, deadline or deadline_after(timeout))
        length = len(request)
        if length > framing.LENGTH_MASK:
            raise ValueError("hprose frame body too large: %d bytes" % length)
        frame = _pack_word(length) + request
        length += 4
        pool = self.pool
        tries = pool.size + 1  # every pooled connection may turn out closed, then a new one
        now = _clock()  # (also this call's time of release: an idle time a bit long)
        if deadline is not None or timeout is None:
            at = None if deadline is None else deadline.at
        else:  # the Deadline object is made only if something needs more than ``at``
            at = now + (timeout if type(timeout) is float else float(timeout))
        while True:
            # the pool's uncontended acquire, inline: an idle connection while nobody waits
            # (ConnectionPool.acquire does the rest: waiting, connecting, the staleness poll)
            sock: Any = None
            with pool._lock:
                if pool._idle and not pool._waiters:
                    sock, since = pool._idle.pop()
            if sock is None or (now - since >= pool._check_after and has_pending_input(sock)):
                if sock is not None:
                    pool.discard(sock)
                deadline = deadline or deadline_at(timeout, at)
                sock = pool.acquire(deadline)
                now = _clock()
            if type(sock) is not streams.TimedSocket:
                return self._tls_half_duplex_round_trip(sock, frame,
                                                        deadline or deadline_at(timeout, at))
            # Half duplex on a plain socket: it stays blocking; one send and, for a small
            # reply, one recv (its kernel timeout is changed only when this deadline needs a
            # nearer one)
            ok = False
            sent = 0
            waiting = False  # the request is out, nothing of the reply came yet
            try:
                if at is None:
                    fast = not sock.rcvtimeo
                else:
                    left = at - now
                    if left <= 0.0:
                        raise timed_out_unsent(self.url, deadline or deadline_at(timeout, at))
                    fast = 0.0 < sock.rcvtimeo <= left - _MARGIN
                try:
                    sent = sock.send(frame, _DONTWAIT)
                except BlockingIOError:
                    pass
                if sent != length:
                    deadline = deadline or deadline_at(timeout, at)
                    sent = self._send_rest(sock, frame, sent, deadline)
                waiting = True
                if fast:
                    try:
                        data = sock.recv(_RECV_CHUNK)
                    except BlockingIOError:  # its kernel timeout ended: the deadline decides
                        data = streams.recv_before(sock, at)
                else:
                    data = streams.recv_before(sock, at)
                waiting = not data
                size = len(data)
                if size > 4:
                    word = _word_from(data[:4], "big")
                    if word + 4 == size and word <= self.max_frame:
                        ok = True
                        return data[4:]
                body = self._read_rest(sock, data, at)
                ok = True
                return body
            except TransportError:
                raise
            except (OSError, EOFError, framing.OversizedFrame) as error:
                deadline = deadline or deadline_at(timeout, at)
                tries -= 1
                if not (tries and (waiting or not sent)
                        and refused_unread(sock, error, deadline)):
                    raise call_failed(self.url, error, deadline,
                                      what="hprose TCP call") from error
                logger.debug("%s had closed a pooled connection; the request goes on "
                             "another", self.url)
                now = _clock()
            finally:
                if ok:
                    # the pool's release, inline when nobody waits and it is not retired
                    with pool._lock:
                        if not pool._waiters and not pool._retired and sock in pool._open:
                            pool._idle.append((sock, now))
                            sock = None
                    if sock is not None:
                        pool.release(sock)
                else:
                    pool.discard(sock)

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """Send one request and return its reply body (see ``Transport.round_trip``)."""
        return self.call(request, None, deadline)

    def _full_duplex_round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """A call on a new (or newly made) shared connection."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        for _ in range(3):
            try:
                return self._full_duplex_connection(deadline).call(request, deadline)
            except DeadConnection:
                # it broke before our request went out; the next connection is new
                if deadline.expired():
                    raise timed_out_unsent(self.url, deadline) from None
        raise ConnectError("hprose TCP connection to %s keeps closing" % self.url, url=self.url)

    def retire(self) -> None:
        """The server left the view: close idle connections now and busy ones as their calls
        end (``close()`` would fail those calls although their server is alive)."""
        self._retired = True
        self.pool.retire()
        with self._fd_lock:
            conn = self._fd_conn
        if conn is not None:
            conn.retire()

    def close(self) -> None:
        """Close every connection (calls in flight fail with ``TransportError``)."""
        self.pool.close()
        with self._fd_lock:
            conn, self._fd_conn = self._fd_conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "TcpTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- connecting (a unix-socket transport overrides _parse_url and _addresses) ----------

    def _parse_url(self, url: str) -> tuple[str, str, int, int]:
        """``(scheme, host, port, family)`` of ``url``; ``ConfigError`` when it is not one."""
        return parse_tcp_url(url)

    def _addresses(self) -> list[tuple[int, int, int, Any]]:
        """``(family, type, proto, address)`` to try in order; raises ``OSError``."""
        return [(family, kind, proto, address) for family, kind, proto, _, address
                in socket.getaddrinfo(self.host, self.port, self.family, socket.SOCK_STREAM)]

    def _connect(self, deadline: Deadline) -> socket.socket:
        """Open one connection, bounded by ``connect_timeout`` and the call's deadline."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        limit = deadline.cap(self.connect_timeout)
        if limit is not None:
            limit = max(limit, 0.001)
        try:
            infos = self._addresses()
        except OSError as error:
            raise ConnectError("cannot resolve hprose server %s: %s" % (self.url, error),
                               url=self.url) from error
        try:
            return streams.open_connection(infos, limit, self.ssl_context, self.host)
        except OSError as error:
            raise connect_error(self.url, error, limit, deadline,
                                self.connect_timeout) from error

    # --- half duplex ----------------------------------------------------------------------

    def _send_rest(self, sock: socket.socket, frame: bytes, sent: int,
                   deadline: Deadline) -> int:
        """The rest of a frame that one non-blocking send did not take, before the deadline;
        returns how much went out (all of it)."""
        try:
            streams.send_before(sock, memoryview(frame)[sent:], deadline)
        except streams.SendTimeout as late:
            if not sent and not late.partial:
                raise timed_out_unsent(self.url, deadline, "while sending (the server is not "
                                       "reading)") from None
            raise CallTimeout("hprose TCP call to %s timed out after %s while sending (the "
                              "server is not reading)" % (self.url, deadline.describe()),
                              url=self.url, sent=True) from None
        return len(frame)

    def _read_rest(self, sock: streams.TimedSocket, data: bytes, at: float | None) -> bytes:
        """The reply when the first receive did not hold exactly one whole frame."""
        decoder = framing.FrameDecoder(self.max_frame)
        while True:
            if not data:
                decoder.closed()
            decoder.feed(data)
            reply = decoder.next_frame()
            if reply is not None:
                break
            want = decoder.wanted()
            data = streams.recv_before(sock, at, max(streams.RECV_CHUNK,
                                                     min(want, _MAX_RECV)))
        if reply.request_id is not None or decoder.buffered:
            raise FrameError("hprose TCP server %s answered a half-duplex request with a "
                             "full-duplex frame or extra bytes" % self.url, url=self.url)
        return reply.body

    def _tls_half_duplex_round_trip(self, sock: socket.socket, frame: bytes,
                                    deadline: Deadline) -> bytes:
        """The same over TLS, where the socket keeps Python's timeout mode (OpenSSL reads
        and writes records of its own)."""
        ok = False
        try:
            try:
                sock.settimeout(deadline.socket_timeout())
            except TimeoutError:
                raise timed_out_unsent(self.url, deadline) from None
            sock.sendall(frame)
            if deadline.at is not None:
                sock.settimeout(deadline.socket_timeout())
            reader = streams.FrameReader(sock, self.max_frame)
            reply = reader.read_frame()
            if reply.request_id is not None or reader.buffered:
                raise FrameError("hprose TCP server %s answered a half-duplex request with a "
                                 "full-duplex frame or extra bytes" % self.url, url=self.url)
            ok = True
            return reply.body
        except TransportError:
            raise
        except (OSError, EOFError, framing.OversizedFrame) as error:
            raise call_failed(self.url, error, deadline, what="hprose TCP call") from error
        finally:
            if ok:
                self.pool.release(sock)
            else:
                self.pool.discard(sock)

    # --- full duplex ----------------------------------------------------------------------

    def _full_duplex_connection(self, deadline: Deadline) -> FullDuplexConnection:
        conn = self._fd_conn
        if conn is not None and not conn.dead:
            return conn
        with self._fd_lock:
            conn = self._fd_conn
            if conn is None or conn.dead:
                if conn is not None:
                    conn.close()
                conn = FullDuplexConnection(self._connect(deadline), self.url, self.max_frame)
                conn.retiring = self._retired
                self._fd_conn = conn
            return conn


class TcpClient(TransportClient):
    """A drop-in hprose client over TCP: ``TcpClient("tcp://127.0.0.1:4321").hello("x")``.

    ``timeout`` is the default per-call timeout in seconds (None waits forever); a call may
    pass its own ``timeout=``.  The other options are ``TcpTransport``'s.
    """

    def __init__(self, uri: str, *, timeout: float | None = 30.0, simple: bool = False,
                 full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0,
                 max_frame: int = framing.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        super().__init__(timeout=timeout, simple=simple)
        self.transport = TcpTransport(uri, full_duplex=full_duplex, pool_size=pool_size,
                                      connect_timeout=connect_timeout, max_frame=max_frame,
                                      ssl_context=ssl_context)
        if type(self)._round_trip is TcpClient._round_trip:
            # the plain call goes straight to the transport
            self._send = self.transport.call  # type: ignore[method-assign]

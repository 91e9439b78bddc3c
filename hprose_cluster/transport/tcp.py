"""The hprose TCP transport (``tcp://``, ``tcp4://``, ``tcp6://``), client and server.

PyPI hprose 1.4.3 has no TCP transport; Go hprose servers and clients speak it by default.
Framing is in ``wire.py``: half duplex (length word, body; one request in flight per
connection; what Go clients send) and full duplex (``length | 0x80000000``, a request id, body;
many requests in flight on one connection, answered in any order).

Client side: ``TcpTransport`` moves bytes (a bounded pool of half-duplex connections, or one
shared full-duplex connection with a reader thread), ``TcpClient`` is the hprose client on top.
Server side: ``TcpServer`` is an ``hprose.HproseService`` served on threads; it decides the mode
per frame, as the Go server does.

TLS: give ``ssl_context`` to both sides (the URL scheme stays ``tcp``, as in Go).  A TLS
connection that is read and written by different threads goes through ``wire.SslIo``.
Full duplex does not bound a send that blocks because the server stopped reading; the wait
for the reply is bounded by the call's timeout.

Failures map onto ``hprose_cluster.errors``: a connect that fails is ``ConnectError``
(``sent=False``), no reply in time is ``CallTimeout``, a connection that breaks under a call is
``TransportError(sent=True)``, a bad or oversized reply is ``FrameError``.  Every message names
the URL.  Only the calls on a broken connection fail; the next call opens a new one.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import queue
import select
import selectors
import signal
import socket
import ssl
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from hprose.server import HproseService

from .. import compat
from ..errors import CallTimeout, ConfigError, ConnectError, FrameError, TransportError
from . import wire
from .base import BaseClient
from .listen import open_listener, server_url

compat.apply()

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["TcpTransport", "TcpClient", "TcpServer", "TcpContext", "parse_tcp_url"]

_SCHEMES = {"tcp": socket.AF_UNSPEC, "tcp4": socket.AF_INET, "tcp6": socket.AF_INET6}


def _default_pool_size() -> int:
    return os.cpu_count() or 4


def parse_tcp_url(url: str) -> tuple[str, str, int, int]:
    """``tcp://host:port/anything`` -> ``(scheme, host, port, address family)``.

    The path is ignored (Go ignores it too).  ``ConfigError`` naming the URL for an unknown
    scheme or a missing host or port.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except (ValueError, AttributeError, TypeError) as error:
        raise ConfigError("bad hprose TCP URL %r: %s" % (url, error)) from error
    if scheme not in _SCHEMES:
        raise ConfigError(
            "bad hprose TCP URL %r: scheme must be tcp, tcp4 or tcp6, not %r" % (url, scheme))
    if not host:
        raise ConfigError("bad hprose TCP URL %r: no host" % (url,))
    if port is None or port == 0:
        raise ConfigError("bad hprose TCP URL %r: no port" % (url,))
    return scheme, host, port, _SCHEMES[scheme]


def _close_quietly(sock: socket.socket | None) -> None:
    """Shut a socket down both ways (waking any thread blocked on it) and close it."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the base method also for SSL sockets
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _has_pending_input(sock: socket.socket) -> bool:
    """True when an idle plain connection is readable: the server closed it or sent garbage.

    Checked before reusing a pooled connection, so a connection the server dropped while idle
    (a restart, an idle timeout) is replaced instead of failing the next call.  Not used for
    TLS, where a TLS 1.3 session ticket can sit unread on a healthy connection.
    """
    if isinstance(sock, ssl.SSLSocket):
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


# ==========================================================================================
# client
# ==========================================================================================


class _DeadConnection(Exception):
    """The shared connection died before this call was sent: open a new one and retry."""


class _PendingCall:
    """One full-duplex call waiting for its reply."""

    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: bytes | None = None
        self.error: TransportError | None = None


_HTTP_REPLY = int.from_bytes(b"HTTP", "big")  # what an HTTP answer reads as a frame length


def _refused(url: str, error: wire.OversizedFrame) -> FrameError:
    if error.length == _HTTP_REPLY:
        return FrameError("%s is not speaking hprose TCP: it answered in HTTP (should its "
                          "record say http://?)" % url, url=url)
    return FrameError("hprose TCP reply from %s refused: %s" % (url, error), url=url)


class _FullDuplexConnection:
    """One shared connection: callers send frames under a lock, a reader thread matches replies.

    When the connection breaks every call still waiting on it fails with the same error and the
    connection is marked dead; the transport then opens a new one for the next call.
    """

    def __init__(self, sock: socket.socket, url: str, max_frame: int):
        self.sock = sock
        # a TLS socket is read by the reader thread while callers write: see wire.SslIo
        self.io: wire.ByteStream = wire.SslIo(sock) if isinstance(sock, ssl.SSLSocket) else sock
        self.url = url
        self.max_frame = max_frame
        self.dead = False
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _PendingCall] = {}
        self._ids = itertools.count(1)
        self._reader = threading.Thread(
            target=self._read_loop, name="hprose-cluster-tcp-reader-%s" % url, daemon=True)
        self._reader.start()

    def call(self, request: bytes, timeout: float | None, deadline: float | None) -> bytes:
        """Send ``request`` and wait for its reply, both within ``deadline``.

        A call is registered as pending only once it holds the send lock, so a connection
        abandoned by the caller ahead of it fails it as never sent (``_DeadConnection``: the
        transport retries on a new connection), not as a request that may have run.
        """
        call = _PendingCall()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._send_lock.acquire(timeout=-1 if remaining is None else remaining):
            raise CallTimeout("hprose TCP call to %s timed out after %.3gs waiting to send (the "
                              "server is not reading)" % (self.url, timeout or 0.0),
                              url=self.url, sent=False)
        try:
            with self._lock:
                if self.dead:
                    raise _DeadConnection()
                request_id = next(self._ids) & 0xFFFFFFFF
                while request_id in self._pending or request_id == 0:
                    request_id = next(self._ids) & 0xFFFFFFFF
                self._pending[request_id] = call
            # within the deadline, so that a server that stops reading cannot hold this caller,
            # or those queued behind it on the send lock, past their timeouts
            wire.send_before(self.io, wire.encode_full(request, request_id), deadline)
        except wire.SendTimeout as late:
            with self._lock:
                self._pending.pop(request_id, None)
            if late.partial:  # a frame cut short would corrupt every later one
                self._fail(TransportError("hprose TCP connection to %s abandoned: a request "
                                          "could not be sent in time" % self.url,
                                          url=self.url, sent=True), None)
            # a frame cut short is never executed: the server needs all of it, and gets no more
            raise CallTimeout("hprose TCP call to %s timed out after %.3gs while sending (the "
                              "server is not reading)" % (self.url, timeout or 0.0),
                              url=self.url, sent=False) from None
        except OSError as error:
            self._fail(TransportError(
                "hprose TCP call to %s failed while sending: %s" % (self.url, error),
                url=self.url, sent=True), error)
        finally:
            self._send_lock.release()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not call.event.wait(remaining):
            with self._lock:
                self._pending.pop(request_id, None)
            if not call.event.is_set():
                raise CallTimeout("hprose TCP call to %s timed out after %.3gs"
                                  % (self.url, timeout or 0.0), url=self.url)
        if call.error is not None:
            # one error object is shared by every call the broken connection failed: raise a
            # copy per caller so that concurrent raises do not mix their tracebacks
            failure = call.error
            raise type(failure)(str(failure), url=failure.url,
                                sent=failure.sent) from failure.__cause__
        assert call.reply is not None
        return call.reply

    def _read_loop(self) -> None:
        reader = wire.FrameReader(self.io, self.max_frame)
        try:
            while True:
                frame = reader.read_frame()
                if frame.request_id is None:
                    raise FrameError(
                        "hprose TCP server %s answered a full-duplex request with a half-duplex "
                        "frame" % self.url, url=self.url)
                with self._lock:
                    call = self._pending.pop(frame.request_id, None)
                if call is None:  # its caller timed out; the late reply is dropped
                    logger.debug("dropping late reply %d from %s", frame.request_id, self.url)
                    continue
                call.reply = frame.body
                call.event.set()
        except wire.OversizedFrame as error:
            self._fail(_refused(self.url, error), error)
        except FrameError as error:
            self._fail(error, None)
        except (OSError, EOFError) as error:
            reason = "connection closed" if isinstance(error, EOFError) else str(error)
            self._fail(TransportError("hprose TCP connection to %s broke: %s" % (self.url, reason),
                                      url=self.url, sent=True), error)

    def _fail(self, error: TransportError, cause: BaseException | None) -> None:
        """Mark dead, close the socket, and fail every waiting call with ``error``."""
        if cause is not None:
            error.__cause__ = cause
        with self._lock:
            first = not self.dead
            self.dead = True
            pending, self._pending = self._pending, {}
        if first and not isinstance(cause, EOFError):
            logger.debug("%s", error)
        _close_quietly(self.sock)
        for call in pending.values():
            call.error = error
            call.event.set()

    def close(self) -> None:
        self._fail(TransportError("hprose TCP connection to %s was closed by the client"
                                  % self.url, url=self.url, sent=True), None)
        if self._reader is not threading.current_thread():
            self._reader.join()


class TcpTransport:
    """The hprose TCP wire for one server URL; implements ``transport.base.Transport``.

    Half duplex (default, what Go speaks): up to ``pool_size`` connections, each carrying one
    request at a time and reused; a caller waits for a free one when all are busy.  A call that
    times out discards its connection, since its late reply would answer the next request.

    ``full_duplex=True``: one shared connection carries every call with a request id; a reader
    thread hands each reply to its caller, in whatever order they come.

    Thread-safe.  ``close()`` closes every socket and joins the reader thread; a later call
    opens new connections.
    """

    def __init__(self, url: str, *, full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0, max_frame: int = wire.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        self.scheme, self.host, self.port, self.family = parse_tcp_url(url)
        self.url = url
        self.full_duplex = full_duplex
        self.pool_size = _default_pool_size() if pool_size is None else int(pool_size)
        if self.pool_size < 1:
            raise ConfigError("pool_size for %s must be at least 1, not %r" % (url, pool_size))
        if max_frame < 1 or max_frame > wire.LENGTH_MASK:
            raise ConfigError("max_frame for %s must be in 1..%d" % (url, wire.LENGTH_MASK))
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        # half duplex pool
        self._cond = threading.Condition()
        self._idle: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._connecting = 0
        # full duplex
        self._fd_lock = threading.Lock()
        self._fd_conn: _FullDuplexConnection | None = None

    def __repr__(self) -> str:
        mode = "full" if self.full_duplex else "half"
        return "TcpTransport(%r, %s duplex)" % (self.url, mode)

    # --- public ---------------------------------------------------------------------------

    def round_trip(self, request: bytes, timeout: float | None = None) -> bytes:
        """Send one request and return its reply body (see ``Transport.round_trip``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.full_duplex:
            for _ in range(3):
                try:
                    return self._full_duplex_connection(deadline).call(request, timeout, deadline)
                except _DeadConnection:
                    # it broke before our request went out; the next connection is new
                    if deadline is not None and time.monotonic() >= deadline:
                        raise CallTimeout("hprose TCP call to %s timed out after %.3gs before "
                                          "it could be sent" % (self.url, timeout or 0.0),
                                          url=self.url, sent=False) from None
                    continue
            raise ConnectError("hprose TCP connection to %s keeps closing" % self.url,
                               url=self.url)
        return self._half_duplex_round_trip(request, timeout, deadline)

    def close(self) -> None:
        """Close every connection (calls in flight fail with ``TransportError``)."""
        with self._cond:
            sockets = list(self._open)
            self._open.clear()
            self._idle.clear()
            self._cond.notify_all()
        for sock in sockets:
            _close_quietly(sock)
        with self._fd_lock:
            conn, self._fd_conn = self._fd_conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "TcpTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- connecting -----------------------------------------------------------------------

    def _connect(self, deadline: float | None) -> socket.socket:
        """Open one connection, bounded by ``connect_timeout`` and the call's deadline."""
        limit = self.connect_timeout
        if deadline is not None:
            remaining = max(0.001, deadline - time.monotonic())
            limit = remaining if limit is None else min(limit, remaining)
        try:
            infos = socket.getaddrinfo(self.host, self.port, self.family, socket.SOCK_STREAM)
        except OSError as error:
            raise ConnectError("cannot resolve hprose server %s: %s" % (self.url, error),
                               url=self.url) from error
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(limit)
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                sock.settimeout(None)
                return sock
            except OSError as error:  # includes timeouts and ssl errors
                last = error
                sock.close()
        raise ConnectError("cannot connect to hprose server %s: %s" % (self.url, last),
                           url=self.url) from last

    # --- half duplex ----------------------------------------------------------------------

    def _acquire(self, deadline: float | None) -> socket.socket:
        """A connection for one call: an idle one, a new one, or the next one released."""
        stale: list[socket.socket] = []
        try:
            with self._cond:
                while True:
                    while self._idle:
                        sock = self._idle.pop()
                        if _has_pending_input(sock):
                            self._open.discard(sock)
                            stale.append(sock)
                            continue
                        return sock
                    if len(self._open) + self._connecting < self.pool_size:
                        self._connecting += 1
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise CallTimeout(
                            "hprose TCP call to %s timed out waiting for a free connection "
                            "(pool of %d)" % (self.url, self.pool_size), url=self.url, sent=False)
                    self._cond.wait(remaining)
        finally:
            for sock in stale:
                _close_quietly(sock)
        try:
            sock = self._connect(deadline)
        except BaseException:
            with self._cond:
                self._connecting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._connecting -= 1
            self._open.add(sock)
        return sock

    def _release(self, sock: socket.socket) -> None:
        with self._cond:
            if sock in self._open:  # else close() ran meanwhile
                self._idle.append(sock)
                self._cond.notify()
                return
        _close_quietly(sock)

    def _discard(self, sock: socket.socket) -> None:
        with self._cond:
            self._open.discard(sock)
            self._cond.notify()
        _close_quietly(sock)

    def _half_duplex_round_trip(self, request: bytes, timeout: float | None,
                                deadline: float | None) -> bytes:
        frame = wire.encode_half(request)
        sock = self._acquire(deadline)
        ok = False
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(frame)
            if deadline is not None:
                sock.settimeout(_remaining(deadline))
            reader = wire.FrameReader(sock, self.max_frame)
            reply = reader.read_frame()
            if reply.request_id is not None or reader.buffered:
                raise FrameError("hprose TCP server %s answered a half-duplex request with a "
                                 "full-duplex frame or extra bytes" % self.url, url=self.url)
            ok = True
            return reply.body
        except socket.timeout as error:
            raise CallTimeout("hprose TCP call to %s timed out after %.3gs"
                              % (self.url, timeout or 0.0), url=self.url) from error
        except wire.OversizedFrame as error:
            raise _refused(self.url, error) from error
        except EOFError as error:
            raise TransportError("hprose TCP connection to %s closed by the server during the "
                                 "call" % self.url, url=self.url, sent=True) from error
        except OSError as error:
            raise TransportError("hprose TCP call to %s failed: %s" % (self.url, error),
                                 url=self.url, sent=True) from error
        finally:
            if ok:
                self._release(sock)
            else:
                self._discard(sock)

    # --- full duplex ----------------------------------------------------------------------

    def _full_duplex_connection(self, deadline: float | None) -> _FullDuplexConnection:
        conn = self._fd_conn
        if conn is not None and not conn.dead:
            return conn
        with self._fd_lock:
            conn = self._fd_conn
            if conn is None or conn.dead:
                if conn is not None:
                    conn.close()
                conn = _FullDuplexConnection(self._connect(deadline), self.url, self.max_frame)
                self._fd_conn = conn
            return conn


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (None: no limit); raises ``socket.timeout`` if none."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    return remaining


class TcpClient(BaseClient):
    """A drop-in hprose client over TCP: ``TcpClient("tcp://127.0.0.1:4321").hello("x")``.

    ``timeout`` is the default per-call timeout in seconds (None waits forever); a call may
    pass its own ``timeout=``.  The other options are ``TcpTransport``'s.
    """

    def __init__(self, uri: str, *, timeout: float | None = 30.0, simple: bool = False,
                 full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0, max_frame: int = wire.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        super().__init__(timeout=timeout, simple=simple)
        self.transport = TcpTransport(uri, full_duplex=full_duplex, pool_size=pool_size,
                                      connect_timeout=connect_timeout, max_frame=max_frame,
                                      ssl_context=ssl_context)

    @property
    def uri(self) -> str:
        return self.transport.url

    def _round_trip(self, request: bytes, timeout: float | None, **options: Any) -> bytes:
        return self.transport.round_trip(request, timeout)

    def close(self) -> None:
        self.transport.close()


# ==========================================================================================
# server
# ==========================================================================================


class TcpContext:
    """The ``context`` hprose hands to filters, events and functions taking ``context``."""

    __slots__ = ("server", "peer", "request_id")

    def __init__(self, server: "TcpServer", peer: Any, request_id: int | None):
        self.server = server
        self.peer = peer
        self.request_id = request_id  # None for a half-duplex request

    def __repr__(self) -> str:
        return "TcpContext(peer=%r, request_id=%r)" % (self.peer, self.request_id)


class _WorkerPool:
    """A bounded pool of named daemon threads (``ThreadPoolExecutor`` threads are not daemon).

    Threads start on demand up to ``size``; work beyond that queues.
    """

    def __init__(self, size: int, name: str):
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple] | None] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="%s-%d" % (self._name, len(self._threads) + 1))
                self._threads.append(thread)
                thread.start()
            self._queue.put((fn, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # never let one task kill a worker silently
                logger.exception("hprose TCP worker task failed")
            with self._lock:
                self._idle += 1

    def shutdown(self, timeout: float | None) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
            self._idle = 0
        for _ in threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("thread %s still busy after stop()", thread.name)


class _ServerConnection:
    """One accepted connection: its socket, write lock and count of full-duplex jobs."""

    def __init__(self, sock: socket.socket, peer: Any, send_timeout: float | None):
        self.sock = sock
        self.send_timeout = send_timeout
        self.io: wire.ByteStream = sock  # wire.SslIo once a TLS handshake is done
        self.peer = peer
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.outstanding = 0
        self.closed = False
        self.thread: threading.Thread | None = None

    def send(self, data: bytes) -> bool:
        """Write one reply; False when the connection is no longer usable.

        A client that stops reading its replies would otherwise hold the writing thread (and,
        through the send lock, every worker answering it) for ever: after ``send_timeout``
        the connection is closed instead.
        """
        deadline = None if self.send_timeout is None else time.monotonic() + self.send_timeout
        try:
            wait = -1.0 if self.send_timeout is None else self.send_timeout
            if not self.send_lock.acquire(timeout=wait):
                raise wire.SendTimeout(partial=False)
            try:
                wire.send_before(self.io, data, deadline)
            finally:
                self.send_lock.release()
            return True
        except wire.SendTimeout:
            if not self.closed:
                logger.warning("closing hprose TCP connection from %s: it read no reply for "
                               "%.3g s", self.peer, self.send_timeout)
            self.force_close()
            return False
        except OSError as error:
            logger.debug("cannot answer %s: %s", self.peer, error)
            return False

    def force_close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        _close_quietly(self.sock)


class TcpServer(HproseService):
    """An hprose service served over TCP on threads: ``TcpServer("127.0.0.1", 4321)``.

    Add functions as with hprose (``addFunction``, ``add``, ...), then ``start()``.
    Each connection has a thread that reads frames.  A half-duplex request is executed on that
    thread, so its connection's requests are answered one at a time, in order (what a Go client
    expects).  A full-duplex request goes to a bounded worker pool shared by the server and is
    answered with its id when done, possibly out of order; at most ``max_pending`` such requests
    per connection are queued before that connection's reader waits (back pressure).  A client
    that reads no reply for ``send_timeout`` seconds is disconnected, so it cannot hold the
    workers that answer everyone else.

    A frame declaring more than ``max_frame`` bytes closes its connection with one logged error
    and nothing allocated for it; an unparsable request gets an hprose ``E`` reply, as from Go.

    ``scheme`` is ``tcp4`` for an IPv4 literal host (``"0.0.0.0"`` included) or
    ``family=AF_INET``, ``tcp6`` for an IPv6 literal host (``"::"`` included) or
    ``family=AF_INET6``, and ``tcp`` for a host name or ``""``.

    Hooks for subclasses (the cluster mixin): ``_on_listening()`` runs after the socket
    listens and before serving; ``_before_stop()`` runs first thing in ``stop()``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, family: int | None = None,
                 max_frame: int = wire.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None,
                 workers: int = 16, max_pending: int = 64, send_timeout: float | None = 30.0):
        super().__init__()
        compat.apply()
        if max_frame < 1 or max_frame > wire.LENGTH_MASK:
            raise ConfigError("max_frame must be in 1..%d, not %r" % (wire.LENGTH_MASK, max_frame))
        self.host = host
        self.port = port
        self.family = family
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        self.address: tuple[str, int] | None = None
        self._tcp_workers = max(1, int(workers))
        self._tcp_max_pending = max(1, int(max_pending))
        if send_timeout is not None and send_timeout <= 0:
            raise ConfigError("send_timeout must be > 0 or None, not %r" % (send_timeout,))
        self.send_timeout = send_timeout
        self._tcp_lock = threading.Lock()
        self._tcp_state = "new"  # new -> listening -> serving -> stopping -> stopped
        self._tcp_listener: socket.socket | None = None
        self._tcp_wake_r: socket.socket | None = None
        self._tcp_wake_w: socket.socket | None = None
        self._tcp_connections: set[_ServerConnection] = set()
        self._tcp_pool: _WorkerPool | None = None
        self._tcp_serve_thread: threading.Thread | None = None
        self._tcp_serving_done = threading.Event()
        self._tcp_stopped = threading.Event()
        self._tcp_in_flight = 0
        self._tcp_idle = threading.Condition()

    # --- the server interface -------------------------------------------------------------

    @property
    def scheme(self) -> str:
        if self.family == socket.AF_INET:
            return "tcp4"
        if self.family == socket.AF_INET6:
            return "tcp6"
        try:
            literal = ipaddress.ip_address(self.host)
        except ValueError:
            return "tcp"
        return "tcp4" if literal.version == 4 else "tcp6"

    @property
    def url(self) -> str:
        host, port = self.address if self.address is not None else (self.host, self.port)
        return server_url(self.scheme, host, port)

    @property
    def in_flight(self) -> int:
        """Requests being executed right now."""
        return self._tcp_in_flight

    def listen(self) -> None:
        """Bind and listen (idempotent); ``self.address`` is then the real ``(host, port)``."""
        with self._tcp_lock:
            if self._tcp_listener is not None:
                return
            sock = open_listener(self.host, self.port, self.family or socket.AF_UNSPEC)
            self._tcp_listener = sock
            self._tcp_wake_r, self._tcp_wake_w = socket.socketpair()
            self._tcp_wake_w.setblocking(False)
            self.address = tuple(sock.getsockname()[:2])  # type: ignore[assignment]
            self._tcp_pool = _WorkerPool(self._tcp_workers,
                                         "hprose-cluster-tcp-worker-%d" % self.address[1])
            self._tcp_state = "listening"
            self._tcp_serving_done.clear()
            self._tcp_stopped.clear()
        logger.info("hprose TCP server listening on %s", self.url)

    def start(self, block: bool = True) -> None:
        """Listen, run ``_on_listening()``, then serve until ``stop()``.

        ``block=False`` serves on a daemon thread and returns at once.  Blocking in the main
        thread, SIGTERM and SIGINT (Ctrl-C) stop the server gracefully and ``start()`` returns.
        """
        self.listen()
        with self._tcp_lock:
            if self._tcp_state != "listening":
                raise RuntimeError("%s is already serving or stopping" % self.url)
            self._tcp_state = "serving"
        try:
            self._on_listening()
        except BaseException:
            with self._tcp_lock:
                self._tcp_state = "listening"
            self._tcp_close_listener()
            raise
        if not block:
            thread = threading.Thread(target=self._tcp_serve,
                                      name="hprose-cluster-tcp-serve-%s" % self.url,
                                      daemon=True)
            self._tcp_serve_thread = thread
            thread.start()
            return
        # in the main thread SIGTERM and SIGINT both stop gracefully, whatever disposition was
        # inherited (a background job starts with SIGINT ignored), as HttpServer does
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._tcp_on_signal)
        try:
            self._tcp_serve()
        except KeyboardInterrupt:  # SIGINT before our handler was installed
            logger.info("hprose TCP server %s interrupted; stopping", self.url)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.stop()
        self._tcp_stopped.wait()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop gracefully (idempotent).

        Runs ``_before_stop()``, stops accepting, stops reading new requests, waits up to
        ``drain_timeout`` seconds for requests in flight to finish and be answered, then closes
        every connection and joins the threads.
        """
        with self._tcp_lock:
            if self._tcp_state in ("new", "stopping", "stopped"):
                return
            was_serving = self._tcp_state == "serving"
            self._tcp_state = "stopping"
        try:
            self._before_stop()  # may take a while (the mixin deregisters, then waits)
        finally:
            deadline = time.monotonic() + max(0.0, drain_timeout)
            self._tcp_wake()
            serve_thread = self._tcp_serve_thread
            if serve_thread is not None and serve_thread is not threading.current_thread():
                serve_thread.join()
            elif serve_thread is None and was_serving:
                # blocking start(): the loop runs in another thread or has already returned
                self._tcp_serving_done.wait(max(0.0, deadline - time.monotonic()))
            self._tcp_close_listener()
            with self._tcp_lock:
                connections = list(self._tcp_connections)
            for conn in connections:  # no new requests; replies still go out
                try:
                    socket.socket.shutdown(conn.sock, socket.SHUT_RD)
                except OSError:
                    pass
            with self._tcp_idle:
                self._tcp_idle.wait_for(lambda: self._tcp_in_flight == 0,
                                        max(0.0, deadline - time.monotonic()))
                if self._tcp_in_flight:
                    logger.warning("hprose TCP server %s: %d requests still running after "
                                   "%.3gs; closing anyway", self.url, self._tcp_in_flight,
                                   drain_timeout)
            with self._tcp_lock:
                connections = list(self._tcp_connections)
            for conn in connections:
                conn.force_close()
            # threads only finishing up exit at once; one stuck in a user function is given
            # what is left of the drain time (at least a few seconds), then left behind (daemon)
            join_by = max(deadline, time.monotonic() + 5.0)
            for conn in connections:
                if conn.thread is not None and conn.thread is not threading.current_thread():
                    conn.thread.join(max(0.0, join_by - time.monotonic()))
            if self._tcp_pool is not None:
                self._tcp_pool.shutdown(max(0.0, join_by - time.monotonic()))
            self._tcp_serve_thread = None
            with self._tcp_lock:
                self._tcp_state = "stopped"
            self._tcp_stopped.set()
            logger.info("hprose TCP server %s stopped", self.url)

    def _on_listening(self) -> None:
        """Hook: the socket listens and nothing is served yet (the mixin registers here)."""

    def _before_stop(self) -> None:
        """Hook: first thing in ``stop()`` (the mixin deregisters here)."""

    def __enter__(self) -> "TcpServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- accepting ------------------------------------------------------------------------

    def _tcp_on_signal(self, signum: int, frame: Any) -> None:
        logger.info("hprose TCP server %s got %s; stopping", self.url,
                    signal.Signals(signum).name)
        self._tcp_wake()

    def _tcp_wake(self) -> None:
        wake = self._tcp_wake_w
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass

    def _tcp_close_listener(self) -> None:
        with self._tcp_lock:
            socks = (self._tcp_listener, self._tcp_wake_r, self._tcp_wake_w)
            self._tcp_listener = self._tcp_wake_r = self._tcp_wake_w = None
        for sock in socks:
            if sock is not None:
                sock.close()

    def _tcp_serve(self) -> None:
        """Accept connections until woken through the wake-up socket pair."""
        listener, wake = self._tcp_listener, self._tcp_wake_r
        assert listener is not None and wake is not None
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(wake, selectors.EVENT_READ, "wake")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "wake":
                        return
                    self._tcp_accept(listener)
        finally:
            selector.close()
            self._tcp_serving_done.set()

    def _tcp_accept(self, listener: socket.socket) -> None:
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # e.g. out of file descriptors: keep serving the others
            logger.error("hprose TCP server %s cannot accept: %s", self.url, error)
            time.sleep(0.05)
            return
        sock.setblocking(True)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = _ServerConnection(sock, peer, self.send_timeout)
        with self._tcp_lock:
            if self._tcp_state != "serving":
                sock.close()
                return
            self._tcp_connections.add(conn)
        conn.thread = threading.Thread(target=self._tcp_serve_connection, args=(conn,),
                                       name="hprose-cluster-tcp-conn-%s:%s" % peer[:2],
                                       daemon=True)
        conn.thread.start()

    # --- serving a connection -------------------------------------------------------------

    def _tcp_serve_connection(self, conn: _ServerConnection) -> None:
        try:
            if self.ssl_context is not None:
                conn.sock.settimeout(10.0)
                tls = self.ssl_context.wrap_socket(conn.sock, server_side=True)
                conn.sock = tls
                conn.io = wire.SslIo(tls)
            self._tcp_read_requests(conn)
        except (ssl.SSLError, OSError) as error:
            if not conn.closed:
                logger.debug("hprose TCP connection from %s: %s", conn.peer, error)
        finally:
            with conn.cond:  # let full-duplex replies of this connection go out first
                conn.cond.wait_for(lambda: conn.outstanding == 0 or conn.closed)
            _close_quietly(conn.sock)
            with self._tcp_lock:
                self._tcp_connections.discard(conn)

    def _tcp_read_requests(self, conn: _ServerConnection) -> None:
        reader = wire.FrameReader(conn.io, self.max_frame)
        while True:
            try:
                frame = reader.read_frame()
            except wire.ConnectionClosed as closed:
                if not closed.clean and not conn.closed:
                    logger.warning("hprose TCP connection from %s closed in the middle of a "
                                   "frame", conn.peer)
                return
            except wire.OversizedFrame as error:
                logger.error("hprose TCP server %s: closing connection from %s: %s",
                             self.url, conn.peer, error)
                return
            if frame.request_id is None:
                self._tcp_begin()
                try:
                    reply = self._handle(frame.body, TcpContext(self, conn.peer, None))
                    sent = conn.send(wire.encode_half(reply))
                finally:
                    self._tcp_end()
                if not sent:
                    return
                continue
            with conn.cond:
                conn.cond.wait_for(
                    lambda: conn.outstanding < self._tcp_max_pending or conn.closed)
                if conn.closed:
                    return
                conn.outstanding += 1
            assert self._tcp_pool is not None
            self._tcp_pool.submit(self._tcp_answer_full_duplex, conn, frame)

    def _tcp_answer_full_duplex(self, conn: _ServerConnection, frame: wire.Frame) -> None:
        self._tcp_begin()
        try:
            reply = self._handle(frame.body, TcpContext(self, conn.peer, frame.request_id))
            conn.send(wire.encode_full(reply, frame.request_id or 0))
        finally:
            self._tcp_end()
            with conn.cond:
                conn.outstanding -= 1
                conn.cond.notify_all()

    # A request counts as in flight from its execution until its reply is written, so that
    # stop() never closes a connection between the two.  (``_handle`` is hprose's: it turns
    # exceptions into ``E`` replies, with the compat fixes applied.)

    def _tcp_begin(self) -> None:
        with self._tcp_idle:
            self._tcp_in_flight += 1

    def _tcp_end(self) -> None:
        with self._tcp_idle:
            self._tcp_in_flight -= 1
            if self._tcp_in_flight == 0:
                self._tcp_idle.notify_all()

"""Socket helpers shared by the threaded transports: frames off a socket, sends bounded by a
deadline, TLS shared between a reading and a writing thread, shutting sockets down.

The framing itself is in ``framing.py`` (no sockets); this is the blocking-socket side of it.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, Protocol, Sequence

from ..deadline import Deadline
from .framing import Frame, FrameDecoder

__all__ = ["ByteStream", "SslIo", "SendTimeout", "send_before", "FrameReader",
           "TimedSocket", "recv_before", "open_connection", "shutdown_socket", "close_quietly",
           "readable_now"]

_clock = time.monotonic
_TIMEVAL = struct.Struct("@ll").pack
_POLL_IDLE = select.POLLIN | select.POLLERR | select.POLLHUP


class ByteStream(Protocol):
    """What framing needs from a connection: a plain socket, or ``SslIo`` around a TLS one."""

    def recv(self, bufsize: int) -> bytes: ...

    def sendall(self, data: bytes | memoryview) -> None: ...


class SendTimeout(Exception):
    """A frame could not be written before its deadline (the peer is not reading).

    ``partial`` when some of it went out: the stream is then cut mid-frame and must be closed.
    """

    def __init__(self, partial: bool):
        super().__init__("send timed out")
        self.partial = partial


def send_before(stream: ByteStream, data: bytes | memoryview, deadline: Deadline) -> None:
    """Write all of ``data`` to a plain socket or an ``SslIo`` before ``deadline``.
    Raises ``SendTimeout``; ``OSError`` from the socket."""
    if isinstance(stream, SslIo):
        stream.sendall(data, deadline)
        return
    if deadline.at is None:
        stream.sendall(data)
        return
    assert isinstance(stream, socket.socket)
    view = memoryview(data)
    while True:  # the common case is one send() that takes everything: no select()
        if stream.fileno() < 0:  # closed by another thread (select would raise ValueError)
            raise OSError("connection closed")
        try:
            view = view[stream.send(view, socket.MSG_DONTWAIT):]
        except BlockingIOError:
            pass
        if not view:
            return
        remaining = deadline.remaining() or 0.0
        if remaining <= 0 or not select.select([], [stream], [], remaining)[1]:
            raise SendTimeout(partial=len(view) < len(data))


RECV_CHUNK = 64 * 1024
"""What one ``recv`` asks for: a small frame, header and body, arrives in one system call."""

KERNEL_TIMEOUT_MARGIN = 0.02
"""How much earlier than a deadline a kernel receive timeout (``SO_RCVTIMEO``) is set to end.
The kernel counts it in scheduler ticks (a 1 ms timeout ends after 10-12 ms here), so it must
never be the last word on a deadline: the last ``2 * margin`` are waited with ``select``, to
the millisecond, as a socket in timeout mode would."""


class TimedSocket(socket.socket):
    """A plain client socket kept in blocking mode, its receives bounded by a kernel timeout.

    A socket in timeout mode (``settimeout``) polls before every ``send`` and ``recv``, and
    changing the timeout per call is one more system call each time.  This one stays in
    blocking mode: one system call per ``recv``.  ``SO_RCVTIMEO`` is changed only when the
    call's deadline is nearer than the value set (``recv_before``); a deadline later than it
    just means a receive may give up early and be made again.  Sends use ``MSG_DONTWAIT``
    (``send_before``), so no send timeout is involved.
    """

    __slots__ = ("rcvtimeo", "idle_poll")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None):
        super().__init__(family, type, proto, fileno)
        self.rcvtimeo = 0.0  # SO_RCVTIMEO set now, in seconds; 0.0: none, block for ever
        # poll(milliseconds) of a poll object watching this socket for input, EOF or errors:
        # made once (connect first: it holds the descriptor number)
        self.idle_poll: Callable[[float], list] | None = None

    def set_rcvtimeo(self, seconds: float) -> None:
        """Set ``SO_RCVTIMEO`` (0.0: none)."""
        whole = int(seconds)
        micro = int((seconds - whole) * 1e6)
        if seconds and not whole and not micro:
            micro = 1  # 0 would mean "no timeout"
        self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL(whole, micro))
        self.rcvtimeo = seconds

    def watch(self) -> None:
        """Make ``idle_poll`` (once connected)."""
        poller = select.poll()
        poller.register(self, _POLL_IDLE)
        self.idle_poll = poller.poll

    def readable_now(self) -> bool:
        """True when the idle connection has input (EOF, or bytes nobody asked for), or is
        unusable: one ``poll`` system call (a closed descriptor polls as POLLNVAL)."""
        if self.idle_poll is None:
            self.watch()
        assert self.idle_poll is not None
        return bool(self.idle_poll(0))

    def wait_readable(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (rounded up to the millisecond) for input; True if any."""
        if self.idle_poll is None:
            self.watch()
        assert self.idle_poll is not None
        return bool(self.idle_poll(-(-seconds * 1000.0 // 1)))


def recv_before(sock: TimedSocket, at: float | None, size: int = RECV_CHUNK) -> bytes:
    """One ``recv`` on a ``TimedSocket`` that returns by ``at`` (a ``time.monotonic()`` value;
    None: no deadline).  Raises ``TimeoutError`` once ``at`` has passed with nothing received,
    ``OSError`` from the socket.

    Usually a single blocking ``recv``: the socket's kernel timeout is changed only when it
    would outlast the deadline.  An early kernel timeout (the value set was for a nearer
    deadline) just receives again.
    """
    while True:
        if at is None:
            if sock.rcvtimeo:
                sock.set_rcvtimeo(0.0)
        else:
            left = at - _clock()
            if left <= 0.0:
                raise TimeoutError("timed out")
            set_ = sock.rcvtimeo
            if not set_ or set_ > left - KERNEL_TIMEOUT_MARGIN:
                if left <= 2 * KERNEL_TIMEOUT_MARGIN:
                    # the last stretch: wait to the millisecond, as timeout mode would
                    if not sock.wait_readable(left):
                        raise TimeoutError("timed out")
                    try:
                        return sock.recv(size, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                sock.set_rcvtimeo(left - KERNEL_TIMEOUT_MARGIN)
        try:
            return sock.recv(size)
        except BlockingIOError:  # the kernel timeout ended; the deadline decides
            continue


def open_connection(addresses: Sequence[tuple[int, int, int, Any]], limit: float | None,
                    ssl_context: ssl.SSLContext | None = None,
                    server_hostname: str | None = None) -> socket.socket:
    """Connect to the first of ``addresses`` (``(family, type, proto, address)``) that
    accepts, within ``limit`` seconds each (connect and TLS handshake), and return the
    socket in blocking mode: a ``TimedSocket`` watched for idle input, or, with
    ``ssl_context``, the TLS socket.  Raises the last ``OSError`` (``ssl.SSLError`` and
    ``TimeoutError`` included)."""
    last: OSError | None = None
    for family, kind, proto, address in addresses:
        plain = TimedSocket(family, kind, proto)
        sock: socket.socket = plain
        try:
            plain.settimeout(limit)
            plain.connect(address)
            if family in (socket.AF_INET, socket.AF_INET6):
                plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(plain, server_hostname=server_hostname)
            else:
                plain.watch()
            sock.settimeout(None)
            return sock
        except OSError as error:  # includes timeouts and ssl errors
            last = error
            sock.close()
            plain.close()
    if last is None:
        raise OSError("no address to connect to")
    raise last


class SslIo:
    """A TLS socket that one thread may read while others write.

    OpenSSL does not allow ``SSL_read`` and ``SSL_write`` on one connection at the same time,
    and a full-duplex connection does exactly that (a reader thread, writers answering or
    calling).  Here every TLS operation runs under one lock on a non-blocking socket; a side
    that must wait for the network releases the lock and waits on the file descriptor, so a
    reader idle in ``recv`` never blocks a writer.  Waits are sliced (``_SLICE``) because the
    other side may have pulled into OpenSSL's buffer the bytes this side is waiting for.
    """

    _SLICE = 0.2

    def __init__(self, sock: ssl.SSLSocket):
        self.sock = sock
        self._lock = threading.Lock()
        sock.setblocking(False)

    def recv(self, bufsize: int, at: float | None = None) -> bytes:
        """Up to ``bufsize`` bytes; with ``at`` (a ``time.monotonic()`` value) raise
        ``TimeoutError`` once it passed with nothing received (``at=0.0``: one try)."""
        while True:
            with self._lock:
                try:
                    return self.sock.recv(bufsize)
                except (ssl.SSLWantReadError, BlockingIOError):
                    readable = True
                except ssl.SSLWantWriteError:
                    readable = False
            if at is None:
                self._wait(readable, None)
                continue
            left = at - _clock()
            if left <= 0.0:
                raise TimeoutError("timed out")
            self._wait(readable, None, left)

    def pending(self) -> int:
        """Bytes OpenSSL has decrypted and not yet handed out."""
        with self._lock:
            return self.sock.pending()

    def sendall(self, data: bytes | memoryview, deadline: Deadline | None = None) -> None:
        """Write all of ``data``; with a ``deadline`` raise ``SendTimeout`` when it passes
        first.  Any attempt counts as partial: OpenSSL may have written part of a record even
        when it reports that it wants to write more."""
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    view = view[self.sock.send(view):]
                    continue
                except (ssl.SSLWantWriteError, BlockingIOError):
                    readable = False
                except ssl.SSLWantReadError:
                    readable = True
            if deadline is not None and deadline.expired():
                raise SendTimeout(partial=True)
            self._wait(readable, deadline)

    def _wait(self, readable: bool, deadline: Deadline | None,
              left: float | None = None) -> None:
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError("TLS connection closed")
        wait = self._SLICE if deadline is None else deadline.cap(self._SLICE)
        if left is not None and wait is not None and left < wait:
            wait = left
        if readable:
            select.select([fd], [], [fd], wait)
        else:
            select.select([], [fd], [fd], wait)


class FrameReader:
    """Reads frames from one blocking socket (or ``SslIo``) through a ``FrameDecoder``.

    A header and a small body usually arrive in one ``recv`` (one system call per frame instead
    of two or three).  Receives are sized to what the current frame still needs, between 64 KiB
    and 1 MiB, never preallocated from the declared length.
    """

    __slots__ = ("sock", "decoder")

    _CHUNK = 64 * 1024
    _MAX_CHUNK = 1024 * 1024

    def __init__(self, sock: ByteStream, max_frame: int):
        self.sock = sock
        self.decoder = FrameDecoder(max_frame)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame."""
        return self.decoder.buffered

    def read_frame(self) -> Frame:
        """Read one frame of either mode.

        Raises ``ConnectionClosed`` when the peer closes (``clean`` when that happened between
        two frames), ``OversizedFrame`` for a declared length over ``max_frame`` (nothing of the
        body is read or allocated), ``OSError`` (including ``socket.timeout``) from the socket.
        """
        decoder = self.decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            want = decoder.wanted()
            chunk = self.sock.recv(self._CHUNK if want < self._CHUNK
                                   else min(want, self._MAX_CHUNK))
            if not chunk:
                decoder.closed()
            decoder.feed(chunk)


def shutdown_socket(sock: socket.socket | None) -> None:
    """Shut a socket down at the OS level so a thread blocked on it wakes up; never closes it.

    ``socket.socket.shutdown`` is called unbound on purpose: ``SSLSocket.shutdown`` would also
    drop its TLS object while another thread may still be using it.  Closing is left to the
    thread that owns the socket: closing a descriptor another thread is about to use makes it
    fail with ``EBADF`` -- or, worse, use a new socket that got the same number.
    """
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass  # already closed or never connected


def close_quietly(sock: socket.socket | None) -> None:
    """Shut down (waking any thread blocked on it) and close; for the socket's owner only."""
    if sock is None:
        return
    shutdown_socket(sock)
    try:
        sock.close()
    except OSError:
        pass


def readable_now(sock: socket.socket, *, tls_buffered: bool = True) -> bool:
    """True when an idle connection has something to read right now: the peer closed it (EOF)
    or sent bytes nobody asked for.  Checked before reusing a pooled connection.

    ``tls_buffered``: count bytes already decrypted in OpenSSL's buffer as readable.  A poll
    error counts as readable (the connection is not usable).
    """
    if isinstance(sock, ssl.SSLSocket) and tls_buffered and sock.pending():
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True

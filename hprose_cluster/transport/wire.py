"""hprose TCP framing, shared by the TCP client and server.

Half duplex:  4-byte big-endian body length (top bit 0), then the body.
Full duplex:  4-byte word ``length | 0x80000000``, a 4-byte request id (opaque, echoed back
verbatim), then the body.  A receiver decides the mode per frame from the top bit.

Reading never trusts a declared length: anything over ``max_frame`` is refused before any
allocation, and a body is read into a buffer that grows with the bytes actually received, so a
peer that declares 2 GiB and sends ten bytes costs ten bytes (plus one receive chunk).
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from typing import NamedTuple, Protocol

FULL_DUPLEX_BIT = 0x80000000
LENGTH_MASK = 0x7FFFFFFF
DEFAULT_MAX_FRAME = 32 * 1024 * 1024

_WORD = struct.Struct(">I")
_TWO_WORDS = struct.Struct(">II")


class OversizedFrame(Exception):
    """A frame declared a body longer than the reader accepts."""

    def __init__(self, length: int, max_frame: int):
        super().__init__("frame declares %d bytes, more than the limit of %d" % (length, max_frame))
        self.length = length
        self.max_frame = max_frame


class ConnectionClosed(EOFError):
    """The peer closed the connection; ``clean`` when it did so between two frames."""

    def __init__(self, message: str, *, clean: bool):
        super().__init__(message)
        self.clean = clean


class Frame(NamedTuple):
    body: bytes
    request_id: int | None  # None for a half-duplex frame


def encode_half(body: bytes) -> bytes:
    """A half-duplex frame: length word, body."""
    if len(body) > LENGTH_MASK:
        raise ValueError("hprose frame body too large: %d bytes" % len(body))
    return _WORD.pack(len(body)) + body


def encode_full(body: bytes, request_id: int) -> bytes:
    """A full-duplex frame: ``length | 0x80000000``, request id, body."""
    if len(body) > LENGTH_MASK:
        raise ValueError("hprose frame body too large: %d bytes" % len(body))
    return _TWO_WORDS.pack(len(body) | FULL_DUPLEX_BIT, request_id & 0xFFFFFFFF) + body


def encode(body: bytes, request_id: int | None) -> bytes:
    """``encode_half`` when ``request_id`` is None, else ``encode_full``."""
    return encode_half(body) if request_id is None else encode_full(body, request_id)


class SendTimeout(Exception):
    """A frame could not be written before its deadline (the peer is not reading).

    ``partial`` when some of it went out: the stream is then cut mid-frame and must be closed.
    """

    def __init__(self, partial: bool):
        super().__init__("send timed out")
        self.partial = partial


def send_before(stream: "ByteStream", data: bytes, deadline: float | None) -> None:
    """Write all of ``data`` to a plain socket or an ``SslIo`` before ``deadline``
    (``time.monotonic()``; None waits as long as it takes).  Raises ``SendTimeout``."""
    if isinstance(stream, SslIo):
        stream.sendall(data, deadline)
        return
    if deadline is None:
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
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [stream], [], remaining)[1]:
            raise SendTimeout(partial=len(view) < len(data))


class ByteStream(Protocol):
    """What framing needs from a connection: a plain socket, or ``SslIo`` around a TLS one."""

    def recv(self, bufsize: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...


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

    def recv(self, bufsize: int) -> bytes:
        while True:
            with self._lock:
                try:
                    return self.sock.recv(bufsize)
                except (ssl.SSLWantReadError, BlockingIOError):
                    readable = True
                except ssl.SSLWantWriteError:
                    readable = False
            self._wait(readable)

    def sendall(self, data: bytes, deadline: float | None = None) -> None:
        """Write all of ``data``; with a ``deadline`` (``time.monotonic()``) raise
        ``SendTimeout`` when it passes first.  Any attempt counts as partial: OpenSSL may have
        written part of a record even when it reports that it wants to write more."""
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
            if deadline is not None and time.monotonic() >= deadline:
                raise SendTimeout(partial=True)
            self._wait(readable, deadline)

    def _wait(self, readable: bool, deadline: float | None = None) -> None:
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError("TLS connection closed")
        wait = self._SLICE if deadline is None else \
            max(0.0, min(self._SLICE, deadline - time.monotonic()))
        if readable:
            select.select([fd], [], [fd], wait)
        else:
            select.select([], [fd], [fd], wait)


class FrameReader:
    """Reads frames from one socket through a small buffer.

    A header and a small body usually arrive in one ``recv`` (one system call per frame instead
    of two or three).  The buffer only ever holds bytes actually received: a body is gathered in
    chunks of at most 1 MiB as they arrive, never preallocated from the declared length.
    """

    _CHUNK = 64 * 1024
    _MAX_CHUNK = 1024 * 1024

    def __init__(self, sock: ByteStream, max_frame: int):
        self.sock = sock
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame."""
        return len(self._buf)

    def _take(self, n: int) -> bytes:
        buf = self._buf
        while len(buf) < n:
            want = min(max(n - len(buf), self._CHUNK), self._MAX_CHUNK)
            chunk = self.sock.recv(want)
            if not chunk:
                raise EOFError("connection closed after %d of %d bytes" % (len(buf), n), len(buf))
            buf += chunk
        data = bytes(buf[:n]) if n < len(buf) else bytes(buf)
        del buf[:n]
        return data

    def read_frame(self) -> Frame:
        """Read one frame of either mode.

        Raises ``ConnectionClosed`` when the peer closes (``clean`` when that happened between
        two frames), ``OversizedFrame`` for a declared length over ``max_frame`` (nothing of the
        body is read or allocated), ``OSError`` (including ``socket.timeout``) from the socket.
        """
        try:
            header = self._take(4)
        except EOFError as error:
            raise ConnectionClosed(error.args[0], clean=error.args[1] == 0) from None
        (word,) = _WORD.unpack(header)
        length = word & LENGTH_MASK
        if length > self.max_frame:
            raise OversizedFrame(length, self.max_frame)
        try:
            request_id = None
            if word & FULL_DUPLEX_BIT:
                (request_id,) = _WORD.unpack(self._take(4))
            body = self._take(length) if length else b""
        except EOFError as error:
            raise ConnectionClosed(error.args[0], clean=False) from None
        return Frame(body, request_id)


def read_frame(sock: socket.socket, max_frame: int) -> Frame:
    """Read one frame with a throw-away ``FrameReader`` (bytes after the frame are lost)."""
    return FrameReader(sock, max_frame).read_frame()

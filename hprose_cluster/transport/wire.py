"""hprose TCP framing, shared by the TCP client and server.

Half duplex:  4-byte big-endian body length (top bit 0), then the body.
Full duplex:  4-byte word ``length | 0x80000000``, a 4-byte request id (opaque, echoed back
verbatim), then the body.  A receiver decides the mode per frame from the top bit.

Reading never trusts a declared length: anything over ``max_frame`` is refused before any
allocation, and a body is read into a buffer that grows with the bytes actually received, so a
peer that declares 2 GiB and sends ten bytes costs ten bytes (plus a small first chunk).
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

FULL_DUPLEX_BIT = 0x80000000
LENGTH_MASK = 0x7FFFFFFF
DEFAULT_MAX_FRAME = 32 * 1024 * 1024

_WORD = struct.Struct(">I")
_TWO_WORDS = struct.Struct(">II")
_FIRST_CHUNK = 64 * 1024  # preallocated at most; beyond it the buffer grows with the data


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


def recv_exactly(sock: socket.socket, n: int) -> bytearray:
    """Read exactly ``n`` bytes; ``EOFError`` if the peer closes first.

    The buffer starts at most ``_FIRST_CHUNK`` long and doubles as bytes arrive, so memory
    follows what was received, not what was announced.
    """
    buf = bytearray(min(n, _FIRST_CHUNK))
    got = 0
    while got < n:
        if got == len(buf):
            buf.extend(bytes(min(n, 2 * len(buf)) - len(buf)))
        view = memoryview(buf)[got:]
        try:
            count = sock.recv_into(view)
        finally:
            view.release()
        if count == 0:
            raise EOFError("connection closed after %d of %d bytes" % (got, n), got)
        got += count
    return buf


def read_frame(sock: socket.socket, max_frame: int) -> Frame:
    """Read one frame of either mode.

    Raises ``ConnectionClosed`` when the peer closes (``clean`` tells whether that happened
    between frames), ``OversizedFrame`` for a declared length over ``max_frame`` (nothing of
    the body is read or allocated), ``OSError`` from the socket.
    """
    try:
        header = recv_exactly(sock, 4)
    except EOFError as error:
        raise ConnectionClosed(error.args[0], clean=error.args[1] == 0) from None
    (word,) = _WORD.unpack_from(header)
    length = word & LENGTH_MASK
    if length > max_frame:
        raise OversizedFrame(length, max_frame)
    try:
        request_id = None
        if word & FULL_DUPLEX_BIT:
            (request_id,) = _WORD.unpack_from(recv_exactly(sock, 4))
        body = bytes(recv_exactly(sock, length)) if length else b""
    except EOFError as error:
        raise ConnectionClosed(error.args[0], clean=False) from None
    return Frame(body, request_id)

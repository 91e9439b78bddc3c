"""hprose TCP framing: bytes in, frames out, no sockets.

Half duplex:  4-byte big-endian body length (top bit 0), then the body.
Full duplex:  4-byte word ``length | 0x80000000``, a 4-byte request id (opaque, echoed back
verbatim), then the body.  A receiver decides the mode per frame from the top bit.

``FrameDecoder`` is fed whatever bytes arrived and hands out complete frames, so the threaded
client and server (``transport.streams.FrameReader``), an asyncio protocol or a unix-socket
transport can share one parser.  It never trusts a declared length: anything over
``max_frame`` is refused as soon as the 4-byte header is in, before any allocation, and the
buffer only ever holds bytes actually received, so a peer that declares 2 GiB and sends ten
bytes costs ten bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["FULL_DUPLEX_BIT", "LENGTH_MASK", "DEFAULT_MAX_FRAME", "OversizedFrame",
           "ConnectionClosed", "Frame", "encode_half", "encode_full", "encode", "FrameDecoder"]

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


class FrameDecoder:
    """Incremental decoder for one byte stream: ``feed()`` bytes, take ``next_frame()``s.

    ``next_frame()`` returns None until a whole frame is buffered; it raises ``OversizedFrame``
    for a header declaring more than ``max_frame`` (the stream is then unusable).  At end of
    stream call ``closed()``, which raises ``ConnectionClosed`` (``clean`` when no partial
    frame was pending).  ``wanted()`` says how many more bytes the current frame needs, so a
    reader can size its next receive.
    """

    __slots__ = ("max_frame", "_buf")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def _need(self) -> int:
        """Total bytes the first frame in the buffer takes (header included), as far as known;
        validates the declared length as soon as the length word is in."""
        buf = self._buf
        if len(buf) < 4:
            return 4
        (word,) = _WORD.unpack_from(buf, 0)
        length = word & LENGTH_MASK
        if length > self.max_frame:
            raise OversizedFrame(length, self.max_frame)
        return length + (8 if word & FULL_DUPLEX_BIT else 4)

    def wanted(self) -> int:
        """Bytes still missing for the next frame (at least 1 when none is complete)."""
        return max(self._need() - len(self._buf), 0)

    def next_frame(self) -> Frame | None:
        buf = self._buf
        size = len(buf)
        if size < 4:
            return None
        (word,) = _WORD.unpack_from(buf, 0)
        length = word & LENGTH_MASK
        if length > self.max_frame:
            raise OversizedFrame(length, self.max_frame)
        if word & FULL_DUPLEX_BIT:
            end = length + 8
            if size < end:
                return None
            (request_id,) = _WORD.unpack_from(buf, 4)
            frame = Frame(bytes(buf[8:end]), request_id)
        else:
            end = length + 4
            if size < end:
                return None
            frame = Frame(bytes(buf[4:end]), None)
        del buf[:end]
        return frame

    def closed(self) -> None:
        """The stream ended: raise ``ConnectionClosed`` saying whether a frame was cut."""
        have = len(self._buf)
        if have == 0:
            raise ConnectionClosed("connection closed", clean=True)
        raise ConnectionClosed("connection closed after %d of %d bytes of a frame"
                               % (have, self._need() if have >= 4 else 4), clean=False)

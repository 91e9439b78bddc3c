"""Full-duplex hprose TCP on asyncio: many calls in flight on one connection.

Each request goes out as one full-duplex frame (``length | 0x80000000``, a request id, the
body) and its reply is matched by id, in whatever order the server answers (WIRE.md).  The call
table, cancellation and back pressure are ``multiplex.py``'s; this module cuts frames.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct

from ..errors import ConfigError, ConnectError, FrameError
from ..transport import wire
from ..transport.tcp import parse_tcp_url
from .base import describe
from .multiplex import MuxConnection, MuxTransport, connect_options

log = logging.getLogger("hprose_cluster.aio.tcp")

__all__ = ["AsyncTcpTransport", "FrameDecoder"]

_WORD = struct.Struct(">I")


class FrameDecoder:
    """hprose TCP frames from bytes as they arrive (no socket): ``feed(data)`` returns the
    frames completed so far.  A declared length over ``max_frame`` raises
    ``wire.OversizedFrame`` before anything is allocated for the body."""

    __slots__ = ("max_frame", "_buf")

    def __init__(self, max_frame: int = wire.DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[wire.Frame]:
        buf = self._buf
        buf += data
        frames: list[wire.Frame] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (word,) = _WORD.unpack_from(buf, pos)
            length = word & wire.LENGTH_MASK
            if length > self.max_frame:
                raise wire.OversizedFrame(length, self.max_frame)
            if word & wire.FULL_DUPLEX_BIT:
                if end - pos < 8 + length:
                    break
                (request_id,) = _WORD.unpack_from(buf, pos + 4)
                frames.append(wire.Frame(bytes(buf[pos + 8:pos + 8 + length]), request_id))
                pos += 8 + length
            else:
                if end - pos < 4 + length:
                    break
                frames.append(wire.Frame(bytes(buf[pos + 4:pos + 4 + length]), None))
                pos += 4 + length
        if pos:
            del buf[:pos]
        return frames


class _TcpConnection(MuxConnection):
    what = "hprose TCP"

    def __init__(self, url: str, max_frame: int):
        super().__init__(url)
        self.decoder = FrameDecoder(max_frame)

    def encode(self, body: bytes, request_id: int) -> bytes:
        return wire.encode_full(body, request_id)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except wire.OversizedFrame as error:
            self.fail(FrameError("hprose TCP reply from %s refused: %s" % (self.url, error),
                                 url=self.url))
            return
        for body, request_id in frames:
            if request_id is None:
                self.fail(FrameError("hprose TCP server %s answered a full-duplex request "
                                     "with a half-duplex frame" % self.url, url=self.url))
                return
            self.reply(request_id, body)


class AsyncTcpTransport(MuxTransport):
    """hprose TCP to one server on asyncio; implements ``aio.base.AsyncTransport``.

    ``connections`` full-duplex connections (default 1) are opened on first use and shared by
    every call, each call going to the least busy one.  A connection that breaks fails only
    the calls on it; the next call opens a new one.  ``ssl_context`` turns on TLS (the scheme
    stays ``tcp``, as in Go).  Use from one event loop.
    """

    what = "hprose TCP"

    def __init__(self, url: str, *, connections: int = 1, connect_timeout: float | None = 5.0,
                 max_frame: int = wire.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        self.scheme, self.host, self.port, self.family = parse_tcp_url(url)
        super().__init__(url, connections)
        if max_frame < 1 or max_frame > wire.LENGTH_MASK:
            raise ConfigError("max_frame for %s must be in 1..%d" % (url, wire.LENGTH_MASK))
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return "AsyncTcpTransport(%r, %d connections)" % (self.url, len(self._slots))

    async def _open(self, limit: float | None) -> MuxConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _TcpConnection(self.url, self.max_frame), self.host, self.port,
                    family=self.family, **connect_options(self.ssl_context, self.host))
        except TimeoutError as error:
            raise ConnectError("cannot connect to hprose server %s: timed out after %.3gs"
                               % (self.url, limit or 0.0), url=self.url) from error
        except ssl.SSLCertVerificationError as error:
            raise ConnectError("TLS certificate verification failed for %s: %s"
                               % (self.url, error.verify_message or error),
                               url=self.url) from error
        except (OSError, ssl.SSLError) as error:  # refused, unreachable, DNS, handshake
            raise ConnectError("cannot connect to hprose server %s: %s" % (self.url, describe(error)),
                               url=self.url) from error
        return conn

"""Full-duplex hprose TCP on asyncio: many calls in flight on one connection.

Each request goes out as one full-duplex frame (``length | 0x80000000``, a request id, the
body) and its reply is matched by id, in whatever order the server answers (WIRE.md).  The call
table, cancellation and back pressure are ``multiplex.py``'s; frames are cut by the socket-free
``transport.framing.FrameDecoder`` the threaded transports use too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, Callable

from ..errors import ConfigError, FrameError
from ..record import unix_socket_path
from ..transport import framing
from ..transport.tcp import parse_tcp_url
from .base import connect_error
from .multiplex import MuxConnection, MuxTransport, connect_options

log = logging.getLogger("hprose_cluster.aio.tcp")

__all__ = ["AsyncTcpTransport", "AsyncUnixTransport"]


class _TcpConnection(MuxConnection):
    what = "hprose TCP"

    def __init__(self, url: str, max_frame: int):
        super().__init__(url)
        self.decoder = framing.FrameDecoder(max_frame)

    def encode(self, body: bytes, request_id: int) -> bytes:
        return framing.encode_full(body, request_id)

    def data_received(self, data: bytes) -> None:
        decoder = self.decoder
        decoder.feed(data)
        while True:
            try:
                frame = decoder.next_frame()
            except framing.OversizedFrame as error:
                self.fail(FrameError("hprose TCP reply from %s refused: %s" % (self.url, error),
                                     url=self.url))
                return
            if frame is None:
                return
            body, request_id = frame
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
                 max_frame: int = framing.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        self.scheme, self.host, self.port, self.family = self._parse_url(url)
        super().__init__(url, connections)
        if max_frame < 1 or max_frame > framing.LENGTH_MASK:
            raise ConfigError("max_frame for %s must be in 1..%d" % (url, framing.LENGTH_MASK))
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return "AsyncTcpTransport(%r, %d connections)" % (self.url, len(self._slots))

    def _parse_url(self, url: str) -> tuple[str, str, int, int]:
        return parse_tcp_url(url)

    async def _create(self, factory: Callable[[], _TcpConnection]) -> _TcpConnection:
        _, conn = await asyncio.get_running_loop().create_connection(
            factory, self.host, self.port, family=self.family,
            **connect_options(self.ssl_context, self.host))
        return conn

    async def _open(self, limit: float | None) -> MuxConnection:
        try:
            async with asyncio.timeout(limit):
                return await self._create(lambda: _TcpConnection(self.url, self.max_frame))
        except (OSError, ssl.SSLError, TimeoutError) as error:  # refused, DNS, TLS, slow
            raise connect_error(self.url, error, limit) from error


class AsyncUnixTransport(AsyncTcpTransport):
    """The hprose TCP wire (full duplex) over the unix socket of ``unix:/path/to.sock``."""

    what = "hprose unix"

    def __init__(self, url: str, *, connections: int = 1, connect_timeout: float | None = 5.0,
                 max_frame: int = framing.DEFAULT_MAX_FRAME, ssl_context: Any = None):
        super().__init__(url, connections=connections, connect_timeout=connect_timeout,
                         max_frame=max_frame)  # no TLS on a local socket

    def __repr__(self) -> str:
        return "AsyncUnixTransport(%r, %d connections)" % (self.url, len(self._slots))

    def _parse_url(self, url: str) -> tuple[str, str, int, int]:
        try:
            path = unix_socket_path(url)
        except ConfigError as error:
            raise ConfigError("bad hprose unix socket URL %r: %s" % (url, error)) from error
        return "unix", path, 0, socket.AF_UNIX

    async def _create(self, factory: Callable[[], _TcpConnection]) -> _TcpConnection:
        _, conn = await asyncio.get_running_loop().create_unix_connection(factory, self.host)
        return conn

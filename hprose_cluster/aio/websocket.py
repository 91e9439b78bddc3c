"""hprose over WebSocket (``ws://``, ``wss://``) on asyncio, many calls per connection.

The wire (/work/shared/wire/WEBSOCKET.md, from real Go peers): every request and reply is one
binary message, a 4-byte big-endian request id then the hprose body; the server echoes the id
and answers in completion order; text messages are ignored; no subprotocol, no extension.
Replies may come fragmented (a first binary frame, then continuations).

The WebSocket protocol itself (handshake, masking, ping/pong, close) is the ``websockets``
library's sans-I/O ``ClientProtocol``, driven from an ``asyncio.Protocol`` (``multiplex.py``
holds the call table, cancellation and back pressure), so a connection costs no task.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from typing import Any

from ..errors import ConfigError, ConnectError, FrameError, TransportError
from ..transport import framing
from ..transport.websocket.protocol import DRAIN_CLOSE
from .base import connect_error, retrieve
from .multiplex import MuxConnection, MuxTransport, connect_options

try:
    from websockets.client import ClientProtocol
    from websockets.exceptions import InvalidURI, PayloadTooBig, WebSocketException
    from websockets.frames import Opcode
    from websockets.http11 import Response
    from websockets.protocol import State
    from websockets.uri import parse_uri
except ImportError as missing:  # an optional dependency: hprose-cluster[websocket]
    raise ImportError("ws:// and wss:// need the websockets package: "
                      "pip install 'hprose-cluster[websocket]'") from missing

log = logging.getLogger("hprose_cluster.aio.websocket")

__all__ = ["AsyncWebSocketTransport"]

_ID = struct.Struct(">I")


class _WsConnection(MuxConnection):
    what = "hprose WebSocket"

    def __init__(self, url: str, uri: Any, max_message: int):
        super().__init__(url)
        self.protocol = ClientProtocol(uri, max_size=max_message)
        self.max_message = max_message
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parts: list[bytes] | None = None  # a fragmented reply being gathered
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        protocol = self.protocol
        protocol.send_request(protocol.connect())
        self._flush()

    def encode(self, body: bytes, request_id: int) -> list[bytes]:
        self.protocol.send_binary(_ID.pack(request_id) + body)
        return self.protocol.data_to_send()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the protocol ends the stream
                transport.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()  # pongs, the answer to a close
        for event in events:
            if isinstance(event, Response):
                self._handshake_done(event)
                continue
            self._frame(event)
        if protocol.state is State.CLOSING or protocol.state is State.CLOSED:
            self._closing()

    def _handshake_done(self, response: Response) -> None:
        if self.open.done():
            return
        error = self.protocol.handshake_exc
        if error is not None:
            self.open.set_exception(ConnectError(
                "WebSocket handshake with %s failed: %s" % (self.url, error), url=self.url))
            self.fail(TransportError("WebSocket handshake with %s failed" % self.url,
                                     url=self.url, sent=False), error)
        else:
            self.open.set_result(None)

    def _frame(self, frame: Any) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY:
            if frame.fin:
                self._message(frame.data)
            else:
                self._parts, self._size = [bytes(frame.data)], len(frame.data)
        elif opcode is Opcode.CONT and self._parts is not None:
            self._parts.append(bytes(frame.data))
            self._size += len(frame.data)
            if self._size > self.max_message:
                self.fail(FrameError("hprose WebSocket reply from %s is over %d bytes"
                                     % (self.url, self.max_message), url=self.url))
                return
            if frame.fin:
                parts, self._parts = self._parts, None
                self._message(b"".join(parts))
        # text messages are not hprose (a server ignores them too); ping, pong, close are
        # the protocol's

    def _message(self, data: bytes) -> None:
        if len(data) < 4:
            self.fail(FrameError("hprose WebSocket server %s sent a message of %d bytes, "
                                 "shorter than a request id" % (self.url, len(data)),
                                 url=self.url))
            return
        (request_id,) = _ID.unpack_from(data)
        self.reply(request_id, bytes(data[4:]))

    def _closing(self) -> None:
        """The WebSocket is closing: fail the calls still waiting, saying whether they may
        have run.  Our server's drain close (``DRAIN_CLOSE``) promises that every request it
        read was answered first and none after ran: those calls were never executed."""
        protocol = self.protocol
        close = protocol.close_rcvd
        if not self.open.done():
            self.open.set_exception(ConnectError("WebSocket connection to %s closed during the "
                                                 "handshake: %s" % (self.url, close or
                                                                    protocol.close_exc),
                                                 url=self.url))
        error: TransportError
        if isinstance(protocol.parser_exc, PayloadTooBig):
            error = FrameError("hprose WebSocket reply from %s refused: %s"
                               % (self.url, protocol.parser_exc), url=self.url)
        elif close is not None and close.code == DRAIN_CLOSE:
            error = TransportError("hprose WebSocket server %s closed the connection (draining)"
                                   " before reading the request" % self.url, url=self.url,
                                   sent=False)
        else:
            reason = close if close is not None else protocol.close_exc or "connection closed"
            error = TransportError("hprose WebSocket connection to %s closed: %s"
                                   % (self.url, reason), url=self.url, sent=True)
        self.fail(error, abort=False)  # let the echo of the close go out

    def eof_received(self) -> bool | None:
        if self.error is None:
            self.protocol.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectError(
                "WebSocket connection to %s closed during the handshake%s"
                % (self.url, ": %s" % exc if exc else ""), url=self.url))
        super().connection_lost(exc)

    def shutdown(self, error: TransportError) -> None:
        if self.error is None and self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)  # a polite close: 1000, then the TCP FIN
            self._flush()
        super().shutdown(error)

    def fail(self, error: TransportError, cause: BaseException | None = None, *,
             abort: bool = True) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectError(str(error), url=self.url))
        retrieve(self.open)  # whoever waited for the handshake may be gone
        super().fail(error, cause, abort=abort)


class AsyncWebSocketTransport(MuxTransport):
    """hprose WebSocket to one server on asyncio; implements ``aio.base.AsyncTransport``.

    ``connections`` connections (default 1) carry every call, each to the least busy one.
    ``ssl_context`` for ``wss://`` (default: ``ssl.create_default_context()``, verifying).
    Replies over ``max_message`` bytes fail their connection.  Use from one event loop.
    """

    what = "hprose WebSocket"

    def __init__(self, url: str, *, connections: int = 1, connect_timeout: float | None = 5.0,
                 max_message: int = framing.DEFAULT_MAX_FRAME,
                 ssl_context: ssl.SSLContext | None = None):
        try:
            self.uri = parse_uri(url)
        except (InvalidURI, ValueError) as error:
            raise ConfigError("bad WebSocket URL %r: %s" % (url, error)) from error
        super().__init__(url, connections)
        if max_message < 5:
            raise ConfigError("max_message for %s must be at least 5 bytes" % url)
        self.connect_timeout = connect_timeout
        self.max_message = max_message
        self.ssl_context = ssl_context
        if self.uri.secure and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        elif not self.uri.secure:
            self.ssl_context = None

    def __repr__(self) -> str:
        return "AsyncWebSocketTransport(%r, %d connections)" % (self.url, len(self._slots))

    async def _open(self, limit: float | None) -> MuxConnection:
        loop = asyncio.get_running_loop()
        conn: _WsConnection | None = None
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _WsConnection(self.url, self.uri, self.max_message),
                    self.uri.host, self.uri.port,
                    **connect_options(self.ssl_context, self.uri.host))
                await conn.open
        except ConnectError:
            raise
        except (OSError, ssl.SSLError, TimeoutError, WebSocketException) as error:
            if conn is not None:  # connected, but the handshake did not finish
                conn.fail(TransportError("handshake failed", url=self.url, sent=False))
            raise connect_error(self.url, error, limit) from error
        except BaseException:  # cancelled mid-handshake: no half-open connection left
            if conn is not None:
                conn.fail(TransportError("connect cancelled", url=self.url, sent=False))
            raise
        return conn

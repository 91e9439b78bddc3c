"""The hprose WebSocket wire, shared by the client and the server (no sockets here).

Every request and every reply is one binary message: a 4-byte big-endian request id, then
the hprose body; the id is opaque and echoed verbatim (shared/wire/WEBSOCKET.md).  Frames,
masking, fragments, ping/pong and the close handshake are the ``websockets`` library's
sans-I/O ``Protocol``; ``Channel`` puts it behind a lock (one reader thread feeds it bytes,
writer threads ask it for frames) and assembles fragmented messages.

Close code ``DRAIN_CLOSE`` (4000, private use under RFC 6455 7.4.2) is our server's promise:
every request it read before sending that close was answered before it, and nothing it read
after was executed.  A client that gets it knows its unanswered calls never ran.
"""

from __future__ import annotations

import struct
import threading
from typing import NamedTuple
from urllib.parse import urlsplit

from websockets.frames import BINARY, CONT, TEXT, Close
from websockets.protocol import CLOSED, OPEN, Protocol

from ...errors import ConfigError

__all__ = ["DEFAULT_MAX_MESSAGE", "DRAIN_CLOSE", "Channel", "ChannelClosed", "Received",
           "ShortMessage", "WsUrl", "encode_payload", "parse_ws_url", "split_payload"]

DEFAULT_MAX_MESSAGE = 32 * 1024 * 1024
"""Largest message (id + body) accepted, in bytes; the TCP transport's frame limit."""

DRAIN_CLOSE = 4000
"""Close code of a server that answered everything it read before closing (see above)."""

SCHEMES = ("ws", "wss")

_ID = struct.Struct(">I")


class ShortMessage(ValueError):
    """A binary message shorter than a request id (4 bytes)."""


class ChannelClosed(Exception):
    """The WebSocket is closing or closed: no message can be sent on it any more."""


def encode_payload(request_id: int, body: bytes) -> bytes:
    """The payload of one message: the id, big-endian, then the hprose body."""
    return _ID.pack(request_id & 0xFFFFFFFF) + body


def split_payload(payload: bytes) -> tuple[int, bytes]:
    """``(request id, hprose body)`` of one message; ``ShortMessage`` under 4 bytes."""
    if len(payload) < 4:
        raise ShortMessage("a message of %d bytes is shorter than a request id" % len(payload))
    return _ID.unpack_from(payload)[0], payload[4:]


class WsUrl(NamedTuple):
    secure: bool
    host: str
    port: int
    resource: str  # path and query sent in the GET line


def parse_ws_url(url: str) -> WsUrl:
    """``ws://host:port/path?q`` -> its parts; ``ConfigError`` naming the URL when bad.

    The port defaults to 80 (ws) and 443 (wss); the path to ``/``.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except (ValueError, AttributeError, TypeError) as error:
        raise ConfigError("bad hprose WebSocket URL %r: %s" % (url, error)) from error
    if scheme not in SCHEMES:
        raise ConfigError("bad hprose WebSocket URL %r: scheme must be ws or wss, not %r"
                          % (url, scheme))
    if not host:
        raise ConfigError("bad hprose WebSocket URL %r: no host" % (url,))
    if port == 0:
        raise ConfigError("bad hprose WebSocket URL %r: port 0" % (url,))
    secure = scheme == "wss"
    resource = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return WsUrl(secure, host, port if port is not None else (443 if secure else 80), resource)


class Received(NamedTuple):
    messages: list[bytes]  # complete binary messages, in order
    writes: bytes  # to send back now (pong, close echo); b"" when nothing
    eof: bool  # the protocol wants the TCP connection closed after ``writes``
    closed: bool  # a close frame came, or the stream ended, or the peer broke the protocol


class Channel:
    """A sans-I/O ``websockets`` protocol, safe for one reader and many writers.

    ``receive()`` is for the one thread that reads the socket; ``message()`` and ``close()``
    may be called by any thread and return the bytes to write (the caller writes them under
    its own send lock).  Text messages are dropped (hprose speaks binary only); fragmented
    binary messages are joined.  The protocol enforces the maximum message size, across
    fragments, and fails the connection with close code 1009 beyond it.
    """

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._fragmented: object = None  # opcode of the message being assembled

    @property
    def open(self) -> bool:
        return self.protocol.state is OPEN

    @property
    def close_received(self) -> Close | None:
        return self.protocol.close_rcvd

    @property
    def error(self) -> Exception | None:
        """Why the protocol gave up: a protocol error, a message too big, an EOF mid-way."""
        return self.protocol.parser_exc

    def receive(self, data: bytes) -> Received:
        """Feed what the socket gave (``b""`` for end of stream)."""
        with self._lock:
            protocol = self.protocol
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            writes = protocol.data_to_send()
            closed = (protocol.state is not OPEN or protocol.close_rcvd is not None
                      or protocol.parser_exc is not None)
        messages = self.assemble(events)
        return Received(messages, b"".join(writes), any(w == b"" for w in writes), closed)

    def assemble(self, events: list) -> list[bytes]:
        """The complete binary messages among ``events`` (frames), fragments joined; text
        messages dropped.  Only the reading thread calls it."""
        messages: list[bytes] = []
        for frame in events:
            opcode = getattr(frame, "opcode", None)
            if opcode is BINARY or opcode is TEXT:
                if frame.fin:
                    if opcode is BINARY:
                        messages.append(bytes(frame.data))
                else:
                    self._fragmented = opcode
                    self._parts = [bytes(frame.data)]
            elif opcode is CONT:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    if self._fragmented is BINARY:
                        messages.append(b"".join(self._parts))
                    self._parts = []
                    self._fragmented = None
        return messages

    def message(self, payload: bytes) -> bytes:
        """The frame carrying ``payload`` as one binary message; ``ChannelClosed`` when the
        WebSocket is no longer open (the peer's close came first: nothing was sent)."""
        with self._lock:
            if self.protocol.state is not OPEN:
                raise ChannelClosed("the WebSocket is %s" % self.protocol.state.name.lower())
            self.protocol.send_binary(payload)
            return b"".join(self.protocol.data_to_send())

    def close(self, code: int, reason: str = "") -> bytes:
        """Start the closing handshake; the close frame to write (``b""`` if already closing)."""
        with self._lock:
            if self.protocol.state is not OPEN:
                return b""
            self.protocol.send_close(code, reason)
            return b"".join(w for w in self.protocol.data_to_send() if w)

    @property
    def finished(self) -> bool:
        """Both close frames went (or the stream ended): the TCP connection may go."""
        return self.protocol.state is CLOSED

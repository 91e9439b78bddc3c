"""The asyncio WebSocket transport against the bytes of real Go peers (shared/wire/WEBSOCKET.md).

A raw-socket peer answers the handshake as the Go server does and replays the captured server
frames; the client's frames are checked byte for byte once unmasked.  Also: fragmented replies
in both shapes the Go server sends, replies out of order, ping/pong, ignored text messages, a
message too short for an id, and a ws:// server reached through AsyncClusterClient.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
import threading
from typing import Callable

import pytest

from hprose_cluster import (AsyncClusterClient, FrameError, Registrar, ServerInfo,
                            TransportError)
from hprose_cluster.aio.websocket import AsyncWebSocketTransport
from hprose_cluster.deadline import Deadline
from hprose_cluster.record import SCHEMES
from hprose_cluster.transport.base import decode_reply, encode_request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HELLO_PAYLOAD = bytes.fromhex("00000001" "4373352248656c6c6f2261317b733522776f726c64227d7a")
HELLO_REPLY_WIRE = bytes.fromhex("821600000001527331312248656c6c6f20776f726c64227a")


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (unmasked)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([len(payload)])
    elif len(payload) < 65536:
        head += bytes([126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([127]) + struct.pack(">Q", len(payload))
    return head + payload


class GoLikePeer:
    """A one-connection WebSocket server on loopback speaking as the Go hprose server does;
    ``script(peer)`` runs on its thread once the handshake is done."""

    def __init__(self, script: Callable[["GoLikePeer"], None]):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "ws://127.0.0.1:%d/" % self.listener.getsockname()[1]
        self.script = script
        self.request = b""
        self.conn: socket.socket | None = None
        self.error: BaseException | None = None
        self._buf = b""
        self.thread = threading.Thread(target=self._serve, name="test-ws-peer", daemon=True)
        self.thread.start()

    def _recv_exact(self, n: int) -> bytes:
        assert self.conn is not None
        while len(self._buf) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError("client closed")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_frame(self) -> tuple[int, bool, bytes]:
        """(opcode, fin, unmasked payload) of the client's next frame; client frames must be
        masked."""
        b0, b1 = self._recv_exact(2)
        assert b1 & 0x80, "a client frame must be masked"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._recv_exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._recv_exact(8))
        key = self._recv_exact(4)
        data = self._recv_exact(length)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data))
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def _serve(self) -> None:
        try:
            self.conn, _ = self.listener.accept()
            while b"\r\n\r\n" not in self._buf:
                self._buf += self.conn.recv(4096)
            self.request, self._buf = self._buf.split(b"\r\n\r\n", 1)
            key = next(line.split(b":", 1)[1].strip() for line in self.request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.script(self)
        except BaseException as error:  # reported by the test through close()
            self.error = error

    def close(self) -> None:
        self.thread.join(10)
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()
        if self.error is not None:
            raise self.error


def request(name: str, *args: object) -> bytes:
    return encode_request(name, list(args), False, False)


def test_hello_matches_the_go_bytes_both_ways(arun):
    seen = []

    def script(peer: GoLikePeer) -> None:
        seen.append(peer.read_frame())
        peer.send(HELLO_REPLY_WIRE)
        seen.append(peer.read_frame())  # the close frame of aclose()

    peer = GoLikePeer(script)

    async def main() -> bytes:
        transport = AsyncWebSocketTransport(peer.url)
        try:
            return await transport.round_trip(request("Hello", "world"), Deadline(5))
        finally:
            await transport.aclose()

    reply = arun(main())
    peer.close()
    assert decode_reply(reply, None, 0) == "Hello world"
    assert seen[0] == (2, True, HELLO_PAYLOAD)  # one binary frame: id 1, then the body
    assert seen[1][0] == 8 and seen[1][2][:2] == b"\x03\xe8"  # close 1000
    head = peer.request.decode().lower()
    assert head.startswith("get / http/1.1\r\n")
    assert "upgrade: websocket" in head and "sec-websocket-version: 13" in head
    assert "sec-websocket-protocol" not in head and "sec-websocket-extensions" not in head


def test_fragmented_replies_in_both_go_shapes_and_out_of_order(arun):
    big = "x" * 9000

    def script(peer: GoLikePeer) -> None:
        ids = {}
        for _ in range(3):
            _, _, payload = peer.read_frame()
            ids[decode_body_name(payload[4:])] = payload[:4]
        body = encode_result(big)
        # last request first; the 8 KB+ shape: everything in a FIN=0 frame, then an empty one
        peer.send(frame(2, ids["c"] + body, fin=False) + frame(0, b"", fin=True))
        # a text message and a ping in between: ignored, and answered with a pong
        peer.send(frame(1, b"not hprose") + frame(9, b"pp"))
        opcode, _, payload = peer.read_frame()
        assert (opcode, payload) == (10, b"pp")
        # the 6 KB shape: the message cut in two frames
        message = ids["a"] + body
        peer.send(frame(2, message[:4082], fin=False) + frame(0, message[4082:], fin=True))
        peer.send(frame(2, ids["b"] + encode_result("b")))
        peer.read_frame()  # close

    peer = GoLikePeer(script)

    async def main() -> list[bytes]:
        transport = AsyncWebSocketTransport(peer.url)
        try:
            return await asyncio.gather(*(transport.round_trip(request(name, big), Deadline(5))
                                          for name in ("a", "b", "c")))
        finally:
            await transport.aclose()

    replies = arun(main())
    peer.close()
    assert [decode_reply(r, None, 0) for r in replies] == [big, "b", big]


def test_a_message_shorter_than_an_id_fails_that_connection_only(arun):
    def script(peer: GoLikePeer) -> None:
        peer.read_frame()
        peer.send(frame(2, b"\x00\x01"))

    peer = GoLikePeer(script)

    async def main() -> None:
        transport = AsyncWebSocketTransport(peer.url)
        try:
            with pytest.raises(FrameError, match="shorter than a request id"):
                await transport.round_trip(request("Hello", "x"), Deadline(5))
        finally:
            await transport.aclose()

    arun(main())
    peer.close()


def test_a_drain_close_fails_the_calls_left_as_never_sent(arun):
    """Close 4000 from our server: it answered every request it read before the close, so
    the calls still waiting never ran (sent=False: failover may retry them anywhere)."""
    def script(peer: GoLikePeer) -> None:
        first = peer.read_frame()[2]
        peer.read_frame()  # the second request: not read as far as the server is concerned
        peer.send(frame(2, first[:4] + encode_result("first")))
        peer.send(frame(8, struct.pack(">H", 4000) + b"draining"))
        opcode, _, payload = peer.read_frame()
        assert opcode == 8 and payload[:2] == struct.pack(">H", 4000)  # the echo

    peer = GoLikePeer(script)

    async def main() -> list:
        transport = AsyncWebSocketTransport(peer.url)
        try:
            first = asyncio.ensure_future(transport.round_trip(request("a", 1), Deadline(5)))
            await asyncio.sleep(0)
            second = asyncio.ensure_future(transport.round_trip(request("b", 2), Deadline(5)))
            return await asyncio.gather(first, second, return_exceptions=True)
        finally:
            await transport.aclose()

    first, second = arun(main())
    peer.close()
    assert decode_reply(first, None, 0) == "first"
    assert isinstance(second, TransportError) and second.sent is False
    assert "draining" in str(second)


@pytest.mark.skipif("ws" not in SCHEMES, reason="ws:// records not accepted yet (record.py)")
def test_a_ws_server_of_a_domain_is_called_through_the_cluster_client(etcd, domain, arun):
    def script(peer: GoLikePeer) -> None:
        _, _, payload = peer.read_frame()
        assert payload == HELLO_PAYLOAD
        peer.send(HELLO_REPLY_WIRE)
        peer.read_frame()

    peer = GoLikePeer(script)
    with Registrar(ServerInfo(domain, peer.url), etcd=etcd.endpoint, ttl=2, heartbeat=0.5):
        async def main() -> str:
            async with AsyncClusterClient(domain, etcd=etcd.endpoint) as client:
                return await client.Hello("world")

        assert arun(main()) == "Hello world"
    peer.close()


def encode_result(value: str) -> bytes:
    from io import BytesIO

    from hprose.io import HproseWriter

    stream = BytesIO()
    stream.write(b"R")
    HproseWriter(stream, True).serialize(value)
    stream.write(b"z")
    return stream.getvalue()


def decode_body_name(body: bytes) -> str:
    """The method name of a request body ``Cs<n>"<name>"...``."""
    return body.split(b'"', 2)[1].decode()

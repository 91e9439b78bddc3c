"""Hand-made WebSocket peers for wire tests: bytes in, bytes out, nothing hidden.

The WebSocket tests check our client and server against the exact frames of Go's hprose
(shared/wire/WEBSOCKET.md).  These helpers speak RFC 6455 with plain sockets, so a test can
send a captured frame byte for byte, or answer with one, without any library in between.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import threading
from typing import Callable, NamedTuple

from tests.support.hprose_servers import recv_exactly

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
H = bytes.fromhex

# Go's frames for Hello("world"), Sum(1,2), Fail() as captured (WEBSOCKET.md): client frames
# masked with the keys shown there, server frames unmasked.
GO_REQUESTS = [
    H("829ca6555afaa6555afbe5266fd8ee303696c9773bcbdd266fd8d13a2896c2772780"),
    H("8293ad70bb0ead70bb0cee03882cfe05d62ccc42c03f9f0dc1"),
    H("828e1d1039731d1039705e630d515b71501f3f6a"),
]
GO_REPLIES = [
    H("821600000001527331312248656c6c6f20776f726c64227a"),
    H("82070000000252337a"),
    H("820e0000000345733422626f6f6d227a"),
]
GO_REQUEST_PAYLOADS = [
    b'\x00\x00\x00\x01Cs5"Hello"a1{s5"world"}z',
    b'\x00\x00\x00\x02Cs3"Sum"a2{12}z',
    b'\x00\x00\x00\x03Cs4"Fail"z',
]
GO_HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: Go-http-client/1.1\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: RRL+PbSUa2ZQ/aw88CnCEw==\r\n"
                b"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n")
GO_ACCEPT = "39craADAQmKEeck6iIKxDgk/0oA="  # for the key above


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes  # unmasked
    mask: bytes | None


def mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data)) if len(data) < 4096 else \
        (int.from_bytes(data, "big") ^ int.from_bytes((key * (len(data) // 4 + 1))[:len(data)],
                                                      "big")).to_bytes(len(data), "big")


def frame(opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = None) -> bytes:
    """One frame; masked when ``key`` is given (client to server)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return frame(opcode, payload, fin=fin, key=os.urandom(4))


def read_frame(sock: socket.socket) -> Frame:
    b0, b1 = recv_exactly(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", recv_exactly(sock, 2))
    elif n == 127:
        (n,) = struct.unpack(">Q", recv_exactly(sock, 8))
    key = recv_exactly(sock, 4) if b1 & 0x80 else None
    payload = recv_exactly(sock, n) if n else b""
    if key is not None:
        payload = mask(payload, key)
    return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, key)


def read_message(sock: socket.socket) -> tuple[int, bytes, list[Frame]]:
    """One data message (control frames in between are returned in the list too)."""
    frames: list[Frame] = []
    parts: list[bytes] = []
    opcode = None
    while True:
        f = read_frame(sock)
        frames.append(f)
        if f.opcode >= 8:
            if opcode is None:
                return f.opcode, f.payload, frames
            continue
        if opcode is None:
            opcode = f.opcode
        parts.append(f.payload)
        if f.fin:
            return opcode, b"".join(parts), frames


def read_http_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("closed during the HTTP head: %r" % data)
        data += chunk
    return data


def raw_client(host: str, port: int, *, handshake: bytes | None = None,
               timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """A connected socket that sent Go's exact handshake; returns it and the server's head."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall(handshake or GO_HANDSHAKE % ("%s:%d" % (host, port)).encode())
    head = read_http_head(sock)
    return sock, head


class RawServer:
    """A WebSocket server whose every connection runs ``script(sock, request_head)``.

    The handshake answer is Go's (101, Upgrade, Connection, Sec-WebSocket-Accept, in that
    order) unless the script is given ``handshake=False`` and answers itself.
    """

    def __init__(self, script: Callable[[socket.socket, bytes], None], *,
                 handshake: bool = True, ssl_context: ssl.SSLContext | None = None):
        self.script = script
        self.handshake = handshake
        self.ssl_context = ssl_context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/" % ("wss" if ssl_context else "ws", self.port)
        self.connections = 0
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="raw-ws-accept")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True,
                                      name="raw-ws-conn")
            self.threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self.ssl_context is not None:
                sock.settimeout(10)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            head = read_http_head(sock)
            if self.handshake:
                key = next(line.split(b":", 1)[1].strip().decode()
                           for line in head.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                             % accept_key(key).encode())
            self.script(sock, head)
        except (OSError, EOFError):  # includes TLS handshakes refused by the client
            pass
        except BaseException as error:  # reported by the test
            self.errors.append(error)
        finally:
            sock.close()

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(5)

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

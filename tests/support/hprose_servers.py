"""hprose servers on loopback and a raw socket client that sends exact bytes.

``serve(transport)`` starts a TcpServer or HttpServer on a free port with the functions of the
wire vectors (WIRE.md): ``hello`` ("Hello " + name), ``sum``, ``echo``, ``fail`` (raises
"boom") and ``appendx`` (appends "x" to its list argument, returns the new length).
``exchange(server, body)`` sends one request body (a half-duplex frame, or an HTTP/1.1 POST)
over a new connection and returns the reply body, byte for byte.  The ``server`` fixture is
such a server, once per transport.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterator

import pytest

from hprose_cluster.transport import framing as wire
from hprose_cluster.transport.http import HttpServer
from hprose_cluster.transport.tcp import TcpServer

TRANSPORTS = ("tcp", "http")


def hello(name: str) -> str:
    return "Hello " + name


def sum(a: int, b: int) -> int:  # noqa: A001 - the remote name
    return a + b


def echo(value: Any) -> Any:
    return value


def fail() -> None:
    raise Exception("boom")


def appendx(items: list) -> int:
    items.append("x")
    return len(items)


VECTOR_FUNCTIONS: tuple[Callable[..., Any], ...] = (hello, sum, echo, fail, appendx)


def serve(transport: str, *functions: Callable[..., Any], **options: Any) -> Any:
    """A started server (``stop()`` it) with the vector functions, then ``functions``."""
    server_class = TcpServer if transport == "tcp" else HttpServer
    server = server_class("127.0.0.1", 0, **options)
    for function in VECTOR_FUNCTIONS + functions:
        server.addFunction(function)
    server.start(block=False)
    return server


@pytest.fixture(params=TRANSPORTS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``serve(transport)`` for each of ``TRANSPORTS``, stopped at teardown."""
    server = serve(request.param)
    yield server
    server.stop(drain_timeout=2)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def tcp_exchange(address: Any, body: bytes, request_id: int | None = None) -> bytes:
    """One frame out, one frame back; the reply's id must echo ``request_id``."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(wire.encode(body, request_id))
        word = int.from_bytes(recv_exactly(sock, 4), "big")
        if request_id is not None:
            assert word & wire.FULL_DUPLEX_BIT
            assert int.from_bytes(recv_exactly(sock, 4), "big") == request_id
        return recv_exactly(sock, word & wire.LENGTH_MASK)


def http_exchange(address: Any, body: bytes | None, method: str = "POST"
                  ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request written by hand; (status, headers, body) of the reply."""
    head = "%s / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n" % (method, address[1])
    if body is not None:
        head += "Content-Type: application/hprose\r\nContent-Length: %d\r\n" % len(body)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head.encode("ascii") + b"\r\n" + (body or b""))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(payload)
    return status, headers, payload


def exchange(server: Any, body: bytes) -> bytes:
    """The reply body to ``body`` from ``server`` (TcpServer or HttpServer), as sent."""
    if isinstance(server, TcpServer):
        return tcp_exchange(server.address, body)
    status, headers, payload = http_exchange(server.address, body)
    assert status == 200 and headers["content-type"] == "text/plain"
    return payload

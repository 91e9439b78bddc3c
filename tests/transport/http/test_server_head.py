"""HttpServer's own head reader on the wire: the limits, line ends, ``Expect: 100-continue``
and keep-alive as ``http.server`` had them, and the strict field syntax.  Raw sockets."""

from __future__ import annotations

import socket

import pytest

from hprose_cluster.transport.http import HttpClient, HttpServer

from tests.support.http import raw_exchange

pytestmark = pytest.mark.timeout(60)

BODY = b'Cs5"hello"a1{s1"a"}z'
REPLY = b'Rs7"Hello a"z'


def _status(reply: bytes) -> bytes:
    return reply.split(b" ", 2)[1]


def _post(*fields: bytes, body: bytes = BODY, version: bytes = b"HTTP/1.1",
          end: bytes = b"\r\n") -> bytes:
    lines = [b"POST / " + version, *fields, b"Content-Length: %d" % len(body)]
    return end.join(lines) + end + end + body


def test_bare_lf_line_ends_are_accepted(server: HttpServer) -> None:
    reply = raw_exchange(server, _post(b"Host: x", end=b"\n"))
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(REPLY)


@pytest.mark.parametrize("field", [b" folded: x", b"Host : x", b"no colon here", b"X: a\x00b"])
def test_a_bad_field_line_is_400_and_the_server_goes_on(server: HttpServer,
                                                        field: bytes) -> None:
    reply = raw_exchange(server, _post(b"Host: x", field))
    assert _status(reply) == b"400" and b"Connection: close" in reply
    with HttpClient(server.url) as client:
        assert client.hello("still") == "Hello still"


def test_limits(server: HttpServer) -> None:
    assert _status(raw_exchange(server, b"POST /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")) \
        == b"414"
    assert _status(raw_exchange(server, _post(b"X: " + b"a" * 70000))) == b"431"
    # 99 fields at most (Content-Length is one): http.client's 100 lines with the blank one
    assert _status(raw_exchange(server, _post(*[b"X-%d: 1" % n for n in range(99)]))) == b"431"
    assert raw_exchange(server, _post(*[b"X-%d: 1" % n for n in range(98)])).endswith(REPLY)


def test_a_head_in_pieces(server: HttpServer) -> None:
    request = _post(b"Host: x")
    with socket.create_connection(server.address, timeout=5) as sock:  # type: ignore[arg-type]
        for n in range(0, len(request), 7):
            sock.sendall(request[n:n + 7])
        reply = b""
        while not reply.endswith(REPLY):
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk


def test_expect_100_continue(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers(max_body=1000)
    with socket.create_connection(server.address, timeout=5) as sock:  # type: ignore[arg-type]
        head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
        sock.sendall(head % len(BODY))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        assert sock.recv(65536).endswith(REPLY)
    reply = raw_exchange(server, b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                                 b"Content-Length: 5000\r\n\r\n")
    assert _status(reply) == b"413" and b"100 Continue" not in reply


def test_keep_alive_rules(server: HttpServer) -> None:
    one = _post(b"Host: x")
    assert raw_exchange(server, one + one).count(REPLY) == 2  # HTTP/1.1: kept
    closing = _post(b"Connection: close")
    reply = raw_exchange(server, closing + one)
    assert reply.count(REPLY) == 1 and b"Connection: close\r\n" in reply
    old = _post(b"Host: x", version=b"HTTP/1.0")
    assert raw_exchange(server, old + one).count(REPLY) == 1  # HTTP/1.0: closed
    kept = _post(b"Connection: keep-alive", version=b"HTTP/1.0")
    reply = raw_exchange(server, kept + one)
    assert reply.count(REPLY) == 2 and b"Connection: keep-alive\r\n" in reply


def test_a_function_sees_the_request_headers_in_its_context(server: HttpServer) -> None:
    server.addFunction(lambda context: context.get("HTTP_X_TRACE", "-") + "|" +
                       context["PATH_INFO"], "trace")
    body = b'Cs5"trace"z'
    request = (b"POST /some%%20path?q=1 HTTP/1.1\r\nX-Trace: a\r\nx-trace: b\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert raw_exchange(server, request).endswith(b'Rs14"a,b|/some path"z')


def test_bytes_that_cannot_start_a_request_get_400_at_once(server: HttpServer) -> None:
    """A hprose TCP frame (a zero byte first) sent to the HTTP port: answered without waiting
    for a line end that never comes (the client keeps its side open)."""
    with socket.create_connection(server.address, timeout=5) as sock:  # type: ignore[arg-type]
        sock.sendall(b"\x00\x00\x00\x11" + b'Cs5"hello"a1{uw}z')
        assert sock.recv(100).startswith(b"HTTP/1.1 400 Not an HTTP request\r\n")

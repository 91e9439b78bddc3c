"""HttpTransport reads replies itself (``http/reply.py``): every body framing ``http.client``
understood, its rules for keeping a connection, and clear errors for what is not HTTP.
A raw server answers each request with the bytes a test gives."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from hprose_cluster.deadline import Deadline
from hprose_cluster.errors import CallTimeout, TransportError
from hprose_cluster.transport.http import HttpTransport

pytestmark = pytest.mark.timeout(60)


class Raw:
    """Answers request n (over all connections) with ``replies[n]``; a reply that ends in
    ``CLOSE`` closes its connection after it.  Records the requests and connections."""

    CLOSE = b"<close>"

    def __init__(self, replies: list[bytes]):
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d/path?q=1" % self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            data = b""
            while self.replies:
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += sock.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + data[:length])
                data = data[length:]
                reply = self.replies.pop(0)
                closing = reply.endswith(self.CLOSE)
                sock.sendall(reply[:-len(self.CLOSE)] if closing else reply)
                if closing:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw() -> Iterator[type]:
    made: list[Raw] = []

    def make(*replies: bytes) -> Raw:
        server = Raw(list(replies))
        made.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in made:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nR1z"


def _calls(server: Raw, count: int, **options: object) -> list[bytes]:
    with HttpTransport(server.url, **options) as transport:  # type: ignore[arg-type]
        return [transport.round_trip(b"Cs1\"a\"z", Deadline(5)) for _ in range(count)]


def test_the_request_is_what_http_client_wrote(raw) -> None:  # type: ignore[no-untyped-def]
    server = raw(OK)
    with HttpTransport(server.url, headers={"X-Token": "t"}) as transport:
        transport.round_trip(b"Cs1\"a\"z", Deadline(5))
    port = server.url.split(":")[2].split("/")[0]
    assert server.requests == [
        b"POST /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAccept-Encoding: identity\r\n"
        b"X-Token: t\r\nContent-Type: application/hprose\r\nContent-Length: 7\r\n\r\n"
        b"Cs1\"a\"z" % port.encode()]


@pytest.mark.parametrize("reply, kept", [
    (OK, True),
    (b"HTTP/1.1 200 OK\nContent-Length: 3\n\nR1z", True),  # LF line ends
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nR\r\n2;x=y\r\n1z\r\n0\r\n"
     b"Trailer: 1\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nR1z" + Raw.CLOSE,
     False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nR1z" + Raw.CLOSE, False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nR1z", True),
    (b"HTTP/1.1 200 OK\r\n\r\nR1z" + Raw.CLOSE, False),  # delimited by the close
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nR1zjunk", False),  # extra bytes
])
def test_body_framings_and_keep_alive(raw, reply: bytes,  # type: ignore[no-untyped-def]
                                      kept: bool) -> None:
    server = raw(reply, OK)
    assert _calls(server, 2) == [b"R1z", b"R1z"]
    assert server.connections == (1 if kept else 2)


@pytest.mark.parametrize("reply, words", [
    (b"ICY 200 OK\r\n\r\n", "not an HTTP status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 3\r\n\r\nR1z", "bad header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nR1z" + Raw.CLOSE, "after 3 of 10"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Le" + Raw.CLOSE, "closed in the reply's head"),
    (b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nlater", "HTTP 503 Busy from"),
])
def test_what_is_not_a_good_reply_is_a_sent_transport_error(  # type: ignore[no-untyped-def]
        raw, reply: bytes, words: str) -> None:
    server = raw(reply, OK)
    with HttpTransport(server.url) as transport:
        with pytest.raises(TransportError) as caught:
            transport.round_trip(b"Cs1\"a\"z", Deadline(5))
        assert caught.value.sent is True and not isinstance(caught.value, CallTimeout)
        assert words in str(caught.value) and server.url in str(caught.value)
        assert transport.round_trip(b"Cs1\"a\"z", Deadline(5)) == b"R1z"  # a new connection


def test_max_body_for_chunked_and_close_delimited_replies(  # type: ignore[no-untyped-def]
        raw) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + \
        b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    delimited = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 3000 + Raw.CLOSE
    for reply in (chunked, delimited):
        server = raw(reply)
        with HttpTransport(server.url, max_body=1000) as transport:
            with pytest.raises(TransportError, match="max_body=1000"):
                transport.round_trip(b"Cs1\"a\"z", Deadline(5))

"""Byte-exact conformance of the TCP transport with frames captured from Go hprose v2.0.6.

The vectors are copied from shared/wire/tcp-frames.txt (Go client/server, and a raw
full-duplex probe against the Go server).  Our client must send exactly the Go client's bytes,
and our server must answer the Go requests with exactly the Go server's bytes.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import hprose
import pytest

from hprose_cluster.transport import framing
from hprose_cluster.transport.tcp import TcpClient, TcpServer

pytestmark = pytest.mark.timeout(30)

H = bytes.fromhex
# half duplex: (Go client request, Go server reply)
HELLO_REQ = H("000000184373352248656c6c6f2261317b733522776f726c64227d7a")  # Cs5"Hello"a1{s5"world"}z
HELLO_REP = H("00000012527331312248656c6c6f20776f726c64227a")  # Rs11"Hello world"z
SUM_REQ = H("0000000f4373332253756d2261327b31327d7a")  # Cs3"Sum"a2{12}z
SUM_REP = H("0000000352337a")  # R3z
FAIL_REQ = H("0000000a437334224661696c227a")  # Cs4"Fail"z
FAIL_REP = H("0000000a45733422626f6f6d227a")  # Es4"boom"z
# full duplex: two pipelined requests (ids 1, 2), answered out of order (2, then 1)
FD_SUM_REQ = H("8000000f000000014373332273756d2261327b31327d7a")  # id 1 Cs3"sum"a2{12}z
FD_HELLO_REQ = H("80000016000000024373352268656c6c6f2261317b733322626f62227d7a")  # id 2 hello bob
FD_HELLO_REP = H("8000000f000000025273392248656c6c6f20626f62227a")  # id 2 Rs9"Hello bob"z
FD_SUM_REP = H("800000030000000152337a")  # id 1 R3z


def test_vectors_decode_as_documented() -> None:
    """Guards the copied constants themselves against a typo."""
    assert HELLO_REQ[4:] == b'Cs5"Hello"a1{s5"world"}z'
    assert HELLO_REP[4:] == b'Rs11"Hello world"z'
    assert FAIL_REP[4:] == b'Es4"boom"z'
    assert FD_HELLO_REQ[8:] == b'Cs5"hello"a1{s3"bob"}z'
    for frame in (HELLO_REQ, HELLO_REP, SUM_REQ, SUM_REP, FAIL_REQ, FAIL_REP):
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        assert framing.encode_half(frame[4:]) == frame
    for frame in (FD_SUM_REQ, FD_HELLO_REQ, FD_HELLO_REP, FD_SUM_REP):
        assert int.from_bytes(frame[:4], "big") == (len(frame) - 8) | 0x80000000
        assert framing.encode_full(frame[8:], int.from_bytes(frame[4:8], "big")) == frame


# --------------------------------------------------------------------- our client, Go bytes


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class RawServer:
    """A one-connection socket server running ``script(conn, received)`` on a thread."""

    def __init__(self, script: Callable[[socket.socket, list[bytes]], None]):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.url = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.error: BaseException | None = None

        def run() -> None:
            try:
                conn, _ = self.listener.accept()
                conn.settimeout(5)
                with conn:
                    script(conn, self.received)
            except BaseException as error:  # reported by close()
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(script: Callable[[socket.socket, list[bytes]], None]) -> RawServer:
        made.append(RawServer(script))
        return made[-1]

    yield make
    for server in made:
        server.listener.close()
        server.thread.join(10)


def test_client_half_duplex_sends_go_bytes(raw_server: Callable[..., RawServer]) -> None:
    script = [(HELLO_REQ, HELLO_REP), (SUM_REQ, SUM_REP), (FAIL_REQ, FAIL_REP)]

    def serve(conn: socket.socket, received: list[bytes]) -> None:
        for request, reply in script:
            received.append(recv_exactly(conn, len(request)))
            conn.sendall(reply)

    server = raw_server(serve)
    with TcpClient(server.url, timeout=5) as client:
        assert client.Hello("world") == "Hello world"
        assert client.Sum(1, 2) == 3
        with pytest.raises(hprose.HproseException, match="^boom$"):
            client.Fail()
    server.close()
    assert server.error is None
    assert server.received == [request for request, _ in script]  # one connection, reused


def test_client_full_duplex_sends_go_bytes_and_matches_out_of_order_replies(
        raw_server: Callable[..., RawServer]) -> None:
    first_arrived = threading.Event()

    def serve(conn: socket.socket, received: list[bytes]) -> None:
        received.append(recv_exactly(conn, len(FD_SUM_REQ)))
        first_arrived.set()
        received.append(recv_exactly(conn, len(FD_HELLO_REQ)))
        conn.sendall(FD_HELLO_REP + FD_SUM_REP)  # id 2 first, as the Go server did
        time.sleep(0.2)

    server = raw_server(serve)
    results: dict[str, object] = {}
    with TcpClient(server.url, timeout=5, full_duplex=True) as client:
        summer = threading.Thread(target=lambda: results.update(sum=client.sum(1, 2)))
        summer.start()
        assert first_arrived.wait(5)
        results["hello"] = client.hello("bob")
        summer.join(5)
    server.close()
    assert server.error is None
    assert server.received == [FD_SUM_REQ, FD_HELLO_REQ]
    assert results == {"sum": 3, "hello": "Hello bob"}


# --------------------------------------------------------------------- our server, Go bytes


@pytest.fixture
def server() -> Iterator[TcpServer]:
    server = TcpServer("127.0.0.1", 0)
    delays = {"sum": 0.0}

    def hello(name: str) -> str:
        return "Hello " + name

    def sum(a: int, b: int) -> int:  # noqa: A001 - the Go sample's name
        time.sleep(delays["sum"])
        return a + b

    def fail() -> None:
        raise Exception("boom")

    server.add(hello)
    server.add(sum)
    server.add(fail)
    server.delays = delays  # type: ignore[attr-defined]
    server.start(block=False)
    yield server
    server.stop(drain_timeout=2)


def raw_connect(server: TcpServer) -> socket.socket:
    assert server.address is not None
    sock = socket.create_connection(server.address, timeout=5)
    return sock


def test_server_answers_go_half_duplex_bytes(server: TcpServer) -> None:
    with raw_connect(server) as sock:
        for request, reply in [(HELLO_REQ, HELLO_REP), (SUM_REQ, SUM_REP), (FAIL_REQ, FAIL_REP)]:
            sock.sendall(request)
            assert recv_exactly(sock, len(reply)) == reply
        # pipelined half-duplex requests are answered one at a time, in order
        sock.sendall(SUM_REQ + HELLO_REQ + FAIL_REQ)
        expected = SUM_REP + HELLO_REP + FAIL_REP
        assert recv_exactly(sock, len(expected)) == expected


def test_server_answers_go_full_duplex_bytes_out_of_order(server: TcpServer) -> None:
    server.delays["sum"] = 0.3  # type: ignore[attr-defined]
    with raw_connect(server) as sock:
        sock.sendall(FD_SUM_REQ + FD_HELLO_REQ)
        assert recv_exactly(sock, len(FD_HELLO_REP)) == FD_HELLO_REP
        assert recv_exactly(sock, len(FD_SUM_REP)) == FD_SUM_REP


def test_server_mixes_modes_per_frame(server: TcpServer) -> None:
    with raw_connect(server) as sock:
        sock.sendall(FD_HELLO_REQ)
        assert recv_exactly(sock, len(FD_HELLO_REP)) == FD_HELLO_REP
        sock.sendall(HELLO_REQ)
        assert recv_exactly(sock, len(HELLO_REP)) == HELLO_REP


def test_function_list(server: TcpServer) -> None:
    with raw_connect(server) as sock:
        sock.sendall(framing.encode_half(b"z"))
        length = int.from_bytes(recv_exactly(sock, 4), "big")
        body = recv_exactly(sock, length)
    assert body == b'Fa3{s5"hello"s3"sum"s4"fail"}z'


# --------------------------------------------------------------------- our client and server


@pytest.mark.parametrize("full_duplex", [False, True], ids=["half", "full"])
def test_round_trips(server: TcpServer, full_duplex: bool) -> None:
    with TcpClient(server.url, timeout=5, full_duplex=full_duplex) as client:
        assert client.hello("a😀b") == "Hello a😀b"
        assert client.hello("😀") == "Hello 😀"
        assert client.Sum(20, 22) == 42
        with pytest.raises(hprose.HproseException) as caught:
            client.fail()
        assert str(caught.value) == "boom"
        raw = client.invoke("fail", [], resultMode=hprose.ResultMode.RawWithEndTag)
        assert raw == b'Es4"boom"z'
        assert client.invoke("hello", ["😀"], resultMode=hprose.ResultMode.RawWithEndTag) == \
            'Rs8"Hello 😀"z'.encode()


def test_non_bmp_request_bytes_on_the_wire(raw_server: Callable[..., RawServer]) -> None:
    expected = [framing.encode_half('Cs5"hello"a1{s4"a😀b"}z'.encode()),
                framing.encode_half('Cs5"hello"a1{s2"😀"}z'.encode())]
    replies = [framing.encode_half('Rs10"Hello a😀b"z'.encode()),
               framing.encode_half('Rs8"Hello 😀"z'.encode())]

    def serve(conn: socket.socket, received: list[bytes]) -> None:
        for request, reply in zip(expected, replies):
            received.append(recv_exactly(conn, len(request)))
            conn.sendall(reply)

    raw = raw_server(serve)
    with TcpClient(raw.url, timeout=5) as client:
        assert client.hello("a😀b") == "Hello a😀b"
        assert client.hello("😀") == "Hello 😀"
    raw.close()
    assert raw.received == expected

"""Our WebSocket client against raw servers that answer with Go hprose's exact bytes.

Every server here is hand-made (tests/support/rawws.py): it reads our frames off the socket
and writes the frames captured from a Go WebSocketService (shared/wire/WEBSOCKET.md), or
misbehaves on purpose.  Nothing of our own server is involved.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from hprose.common import HproseException
from hprose.io import HproseReader, HproseWriter

from hprose_cluster.embedded import free_port
from hprose_cluster.errors import CallTimeout, ConfigError, ConnectError, FrameError, \
    TransportError
from hprose_cluster.transport.websocket import DRAIN_CLOSE, WebSocketClient, WebSocketTransport
from tests.support.rawws import (GO_REPLIES, GO_REQUEST_PAYLOADS, RawServer, frame, read_frame,
                           read_message)
from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)

HELLO = b'Cs5"hello"a1{s%d"%s"}z'


def our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hprose-cluster-ws")}


def reply(request_id: bytes, body: bytes) -> bytes:
    return frame(2, request_id + body)


def hello_reply(payload: bytes) -> bytes:
    """The reply frame to a request ``hello(name)``: "Hello name", with the request's id."""
    stream = io.BytesIO(payload[5:])
    reader = HproseReader(stream)
    reader.readString()  # the method name
    stream.read(1)
    (name,) = reader.readListWithoutTag()
    out = io.BytesIO()
    out.write(b"R")
    HproseWriter(out, True).writeString("Hello " + name)
    out.write(b"z")
    return reply(payload[:4], out.getvalue())


def echo_hello(sock: socket.socket, head: bytes) -> None:
    """Answers every hello(name) request, in order, until the client closes."""
    while True:
        opcode, payload, _ = read_message(sock)
        if opcode == 8:
            return
        sock.sendall(hello_reply(payload))


# --------------------------------------------------------------------- Go's bytes


def test_requests_are_gos_payloads_and_gos_replies_decode() -> None:
    seen: list[tuple[int, bytes, bool]] = []
    heads: list[bytes] = []

    def script(sock: socket.socket, head: bytes) -> None:
        heads.append(head)
        for wire_reply in GO_REPLIES:
            f = read_frame(sock)
            seen.append((f.opcode, f.payload, f.mask is not None and f.fin))
            sock.sendall(wire_reply)
        read_frame(sock)

    with RawServer(script) as server, WebSocketClient(server.url + "any/path?q=1",
                                                      timeout=5) as client:
        assert client.Hello("world") == "Hello world"
        assert client.Sum(1, 2) == 3
        with pytest.raises(HproseException, match="^boom$"):
            client.Fail()
    assert seen == [(2, payload, True) for payload in GO_REQUEST_PAYLOADS]
    head = heads[0].decode()
    assert head.startswith("GET /any/path?q=1 HTTP/1.1\r\n")
    lower = head.lower()
    assert "sec-websocket-protocol" not in lower and "sec-websocket-extensions" not in lower
    assert "upgrade: websocket" in lower and "sec-websocket-version: 13" in lower
    assert server.errors == []


def test_gos_fragmented_replies_are_joined() -> None:
    """Go's server sends big replies as one FIN=0 frame and an empty continuation, and
    middle-sized ones split in two (WEBSOCKET.md)."""
    big = "x" * 1_048_576
    medium = "m" * 6000

    def script(sock: socket.socket, head: bytes) -> None:
        for text in (big, medium):
            _, payload, _ = read_message(sock)
            data = payload[:4] + b'Rs%d"%s"z' % (len(text), text.encode())
            if len(text) > 8000:
                sock.sendall(frame(2, data, fin=False) + frame(0, b"", fin=True))
            else:
                sock.sendall(frame(2, data[:4082], fin=False) + frame(0, data[4082:]))
        read_frame(sock)

    with RawServer(script) as server, WebSocketClient(server.url, timeout=10) as client:
        assert client.echo("ignored") == big
        assert client.echo("ignored") == medium


def test_16_threads_answered_out_of_order_on_one_connection() -> None:
    """The server holds 16 requests, then answers them in reverse order (Go answers in
    completion order): each caller gets its own reply."""
    def script(sock: socket.socket, head: bytes) -> None:
        for _ in range(3):
            batch = [read_message(sock)[1] for _ in range(16)]
            for payload in reversed(batch):
                sock.sendall(hello_reply(payload))
        read_frame(sock)

    results: dict[int, list[str]] = {}
    with RawServer(script) as server, WebSocketClient(server.url, timeout=20) as client:
        def work(n: int) -> None:
            results[n] = [client.hello("t%d-%d" % (n, i)) for i in range(3)]

        errors = run_in_threads(work, 16)
    assert not errors, errors[:3]
    assert results == {n: ["Hello t%d-%d" % (n, i) for i in range(3)] for n in range(16)}
    assert server.connections == 1


# --------------------------------------------------------------------- failures


def test_connect_failures_are_connect_errors() -> None:
    port = free_port()
    with pytest.raises(ConnectError) as refused:
        WebSocketClient("ws://127.0.0.1:%d/" % port, timeout=2).hello("x")
    assert refused.value.sent is False and str(port) in str(refused.value)

    def plain_http(sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with RawServer(plain_http, handshake=False) as server:
        with pytest.raises(ConnectError, match="HTTP 200") as refused_upgrade:
            WebSocketClient(server.url, timeout=2).hello("x")
    assert refused_upgrade.value.sent is False

    def silent(sock: socket.socket, head: bytes) -> None:
        time.sleep(3)

    with RawServer(silent, handshake=False) as server:
        started = time.monotonic()
        with pytest.raises(ConnectError):
            WebSocketClient(server.url, timeout=0.5).hello("x")
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("url", ["http://h:1/", "ws://:80/", "ws://h:0/", "wss://h:x/", "ws"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        WebSocketTransport(url)


def test_timeout_then_late_reply_dropped_and_connection_kept() -> None:
    def script(sock: socket.socket, head: bytes) -> None:
        _, slow, _ = read_message(sock)
        _, fast, _ = read_message(sock)
        time.sleep(0.6)  # the first caller gave up at 1 s
        sock.sendall(reply(slow[:4], b'Rs4"late"z') + reply(fast[:4], b'Rs4"fast"z'))
        echo_hello(sock, head)

    with RawServer(script) as server, WebSocketClient(server.url, timeout=5) as client:
        with pytest.raises(CallTimeout) as late:
            # the server answers "slow" only after reading "fast", so this times out anyway;
            # 1 s (not 0.3) leaves a loaded machine time to connect and send it first
            client.invoke("slow", [], timeout=1.0)
        assert late.value.sent is True
        assert client.invoke("fast", []) == "fast"
        assert client.hello("again") == "Hello again"
    assert server.connections == 1


def test_broken_connection_fails_only_its_calls_as_sent() -> None:
    got = threading.Event()

    def script(sock: socket.socket, head: bytes) -> None:
        if server.connections == 1:
            read_message(sock)
            read_message(sock)
            got.set()
            return  # closes the TCP connection with two calls waiting
        echo_hello(sock, head)

    errors: list[BaseException] = []
    with RawServer(script) as server, WebSocketClient(server.url, timeout=5) as client:
        def call() -> None:
            try:
                client.hello("a")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert got.is_set()
        assert len(errors) == 2
        assert all(type(e) is TransportError and e.sent for e in errors), errors
        assert client.hello("next") == "Hello next"  # a new connection
    assert server.connections == 2


def test_drain_close_tells_unanswered_calls_they_never_ran() -> None:
    def script(sock: socket.socket, head: bytes) -> None:
        if server.connections == 1:
            read_message(sock)
            sock.sendall(frame(8, DRAIN_CLOSE.to_bytes(2, "big") + b"draining"))
            opcode, payload, _ = read_message(sock)  # the client's echo
            assert opcode == 8 and payload[:2] == DRAIN_CLOSE.to_bytes(2, "big")
            return
        echo_hello(sock, head)

    with RawServer(script) as server, WebSocketClient(server.url, timeout=5) as client:
        with pytest.raises(TransportError) as drained:
            client.hello("a")
        assert drained.value.sent is False
        assert client.hello("b") == "Hello b"
    assert server.errors == []


def test_other_close_codes_are_sent_and_pings_get_pongs() -> None:
    pongs: list[bytes] = []

    def script(sock: socket.socket, head: bytes) -> None:
        if server.connections == 1:
            read_message(sock)
            sock.sendall(frame(9, b"pp"))
            opcode, payload, _ = read_message(sock)
            pongs.append(bytes([opcode]) + payload)
            sock.sendall(frame(1, b"text is ignored") + frame(8, (1001).to_bytes(2, "big")))
            read_message(sock)
            return
        echo_hello(sock, head)

    with RawServer(script) as server, WebSocketClient(server.url, timeout=5) as client:
        with pytest.raises(TransportError) as closed:
            client.hello("a")
        assert closed.value.sent is True and "1001" in str(closed.value)
    assert pongs == [b"\x0app"]


def test_oversized_or_short_replies_are_frame_errors() -> None:
    def script(sock: socket.socket, head: bytes) -> None:
        _, payload, _ = read_message(sock)
        if server.connections == 1:
            sock.sendall(reply(payload[:4], b"R" + b"1" * 2000 + b"z"))
        elif server.connections == 2:
            sock.sendall(frame(2, b"\x00\x01"))
        time.sleep(1)

    with RawServer(script) as server, \
            WebSocketClient(server.url, timeout=5, max_message=1000) as client:
        with pytest.raises(FrameError, match="refused"):
            client.hello("a")
        with pytest.raises(FrameError, match="shorter than a request id"):
            client.hello("b")


def test_close_leaves_no_thread_behind() -> None:
    before = our_threads()
    with RawServer(echo_hello) as server:
        client = WebSocketClient(server.url, timeout=5)
        assert client.hello("a") == "Hello a"
        assert our_threads() - before
        client.close()
        assert not our_threads() - before
        assert client.hello("reopened") == "Hello reopened"  # usable after close()
        client.close()


# --------------------------------------------------------------------- wss://


def test_wss_verifies_the_server_certificate(tmp_path: Path) -> None:
    from tests.support.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    with RawServer(echo_hello, ssl_context=server_context) as server:
        url = "wss://localhost:%d/" % server.port
        with WebSocketClient(url, timeout=5, ssl_context=trusted) as client:
            assert client.hello("tls") == "Hello tls"
            assert client.hello("x" * 100_000) == "Hello " + "x" * 100_000
            def work(n: int) -> None:  # one TLS socket read by the reader, written by 8
                for i in range(20):
                    assert client.hello("%d-%d" % (n, i)) == "Hello %d-%d" % (n, i)

            errors = run_in_threads(work, 8)
            assert not errors, errors[:3]
        with pytest.raises(ConnectError, match="certificate") as untrusted:
            WebSocketClient(url, timeout=5).hello("x")  # the system store: not our CA
        assert untrusted.value.sent is False

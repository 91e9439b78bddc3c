"""Our WebSocket server against raw clients sending Go hprose's exact frames, and misbehaving.

A raw client (tests/support/rawws.py) sends the handshake and frames captured from Go's
WebSocketClient (shared/wire/WEBSOCKET.md) byte for byte, and the server must answer with Go's
WebSocketService's bytes.  The other tests probe what WEBSOCKET.md says about the Go server:
text ignored, ping answered, close echoed, fragments, plain HTTP on the same port, and a
message shorter than an id, which kills Go's server and must only close that one connection.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from hprose_cluster.errors import ConnectError
from hprose_cluster.transport.websocket import WebSocketClient, WebSocketServer
from tests.support.rawws import (GO_ACCEPT, GO_REPLIES, GO_REQUESTS, client_frame,
                           raw_client, read_frame, read_message)
from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)


def make_server(**options: object) -> WebSocketServer:
    server = WebSocketServer("127.0.0.1", 0, **options)  # type: ignore[arg-type]

    def hello(name: str) -> str:
        return "Hello " + name

    def sum(a: int, b: int) -> int:  # noqa: A001 - Go's test service calls it Sum
        return a + b

    def fail() -> None:
        raise Exception("boom")

    def sleep(seconds: float, value: object = None) -> object:
        time.sleep(seconds)
        return value

    def echo(value: object) -> object:
        return value

    for function in (hello, sum, fail, sleep, echo):
        server.addFunction(function)
    return server


@pytest.fixture
def server() -> Iterator[WebSocketServer]:
    server = make_server()
    server.start(block=False)
    try:
        yield server
    finally:
        server.stop(drain_timeout=2)


def connect(server: WebSocketServer, handshake: bytes | None = None) -> tuple[socket.socket, bytes]:
    host, port = server.address
    return raw_client(host, port, handshake=handshake)


def request(request_id: int, body: bytes) -> bytes:
    return client_frame(2, request_id.to_bytes(4, "big") + body)


# --------------------------------------------------------------------- Go's bytes


def test_gos_frames_get_gos_replies_byte_for_byte(server: WebSocketServer) -> None:
    sock, head = connect(server)
    with sock:
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols"
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
                   if k}
        assert headers["sec-websocket-accept"] == GO_ACCEPT
        assert headers["upgrade"].lower() == "websocket"
        assert "upgrade" in headers["connection"].lower()
        assert "sec-websocket-protocol" not in headers
        assert "sec-websocket-extensions" not in headers
        for go_request, go_reply in zip(GO_REQUESTS, GO_REPLIES):
            sock.sendall(go_request)
            assert sock.recv(len(go_reply) + 100) == go_reply


def test_subprotocol_extensions_origin_and_path_as_go(server: WebSocketServer) -> None:
    host, port = server.address
    handshake = (b"GET /any/path?q=1 HTTP/1.1\r\nHost: %s:%d\r\nConnection: Upgrade\r\n"
                 b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: RRL+PbSUa2ZQ/aw88CnCEw==\r\n"
                 b"Sec-WebSocket-Protocol: hprose\r\n"
                 b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                 b"Origin: http://evil.example\r\n\r\n" % (host.encode(), port))
    sock, head = connect(server, handshake)
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        lower = head.lower()
        assert b"sec-websocket-protocol" not in lower and b"sec-websocket-extensions" not in lower
        sock.sendall(GO_REQUESTS[0])
        assert read_frame(sock).payload == GO_REPLIES[0][2:]


def test_text_ignored_ping_answered_close_echoed(server: WebSocketServer) -> None:
    sock, _ = connect(server)
    with sock:
        sock.sendall(client_frame(1, b"\x00\x00\x00\x09not hprose"))
        sock.sendall(client_frame(9, b"pp"))
        pong = read_frame(sock)
        assert (pong.opcode, pong.payload, pong.mask) == (10, b"pp", None)
        sock.sendall(request(5, b'Cs4"echo"a1{s2"ok"}z'))
        answer = read_frame(sock)
        assert answer.payload == b'\x00\x00\x00\x05Rs2"ok"z'  # nothing came for the text
        sock.sendall(client_frame(8, b"\x03\xe8"))
        echo = read_frame(sock)
        assert (echo.opcode, echo.payload) == (8, b"\x03\xe8")
        sock.settimeout(5)
        assert sock.recv(10) == b""  # the server closes the TCP connection


def test_fragmented_request_and_a_1_mb_message_both_ways(server: WebSocketServer) -> None:
    sock, _ = connect(server)
    with sock:
        body = b'\x00\x00\x00\x07Cs4"echo"a1{s5"split"}z'
        sock.sendall(client_frame(2, body[:10], fin=False) + client_frame(0, body[10:]))
        assert read_frame(sock).payload == b'\x00\x00\x00\x07Rs5"split"z'
        # as Go's client sends a big request: frames of 4096 bytes, the last one shorter
        text = "ü" * 524_288  # 1 MiB of UTF-8
        payload = b'\x00\x00\x00\x08Cs4"echo"a1{s%d"%s"}z' % (len(text), text.encode())
        chunks = [payload[i:i + 4096] for i in range(0, len(payload), 4096)]
        frames = [client_frame(2 if i == 0 else 0, chunk, fin=i == len(chunks) - 1)
                  for i, chunk in enumerate(chunks)]
        sock.sendall(b"".join(frames))
        opcode, reply, _ = read_message(sock)
        assert opcode == 2
        assert reply == b'\x00\x00\x00\x08R' + payload[16:-2] + b"z"


def test_a_message_shorter_than_an_id_closes_only_its_connection(server: WebSocketServer) -> None:
    """Go's server panics on this (WEBSOCKET.md); ours closes that connection with 1002."""
    with WebSocketClient(server.url, timeout=10) as good:
        assert good.hello("before") == "Hello before"
        slow = threading.Thread(target=lambda: results.append(good.sleep(0.5, "slow")))
        results: list[object] = []
        slow.start()
        bad, _ = connect(server)
        with bad:
            bad.sendall(client_frame(2, b"\x00\x01"))
            close = read_frame(bad)
            assert close.opcode == 8 and close.payload[:2] == (1002).to_bytes(2, "big")
        slow.join(10)
        assert results == ["slow"]
        assert good.hello("after") == "Hello after"


def test_a_message_over_max_message_closes_only_its_connection() -> None:
    server = make_server(max_message=1000)
    server.start(block=False)
    try:
        sock, _ = connect(server)
        with sock:
            sock.sendall(request(1, b'Cs4"echo"a1{s2000"' + b"x" * 2000 + b'"}z'))
            close = read_frame(sock)
            assert close.opcode == 8 and close.payload[:2] == (1009).to_bytes(2, "big")
        with WebSocketClient(server.url, timeout=5) as client:
            assert client.hello("small") == "Hello small"
    finally:
        server.stop(drain_timeout=2)


def test_the_same_port_serves_plain_http(server: WebSocketServer) -> None:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("POST", "/", body=b'Cs5"Hello"a1{s5"world"}z',
                     headers={"Content-Type": "application/hprose"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/plain")
        assert response.read() == b'Rs11"Hello world"z'
        conn.request("GET", "/")
        listing = conn.getresponse().read()
        assert listing.startswith(b"Fa") and b'"hello"' in listing
    finally:
        conn.close()


def test_unparsable_and_unknown_requests_get_e_replies(server: WebSocketServer) -> None:
    sock, _ = connect(server)
    with sock:
        sock.sendall(request(9, b'Cs6"nosuch"z'))
        reply = read_frame(sock).payload
        assert reply[:4] == b"\x00\x00\x00\x09" and reply[4:5] == b"E"
        sock.sendall(request(10, b"garbage"))
        reply = read_frame(sock).payload
        assert reply[:4] == b"\x00\x00\x00\x0a" and reply[4:5] == b"E"


# --------------------------------------------------------------------- our client, our server


def test_16_threads_share_one_connection_and_run_concurrently(server: WebSocketServer) -> None:
    with WebSocketClient(server.url, timeout=20) as client:
        results: dict[int, object] = {}

        def work(n: int) -> None:  # the slow ones first in time, answered last: out of order
            results[n] = client.sleep(0.4 if n % 2 else 0.0, n)

        started = time.monotonic()
        errors = run_in_threads(work, 16, timeout=20)
        elapsed = time.monotonic() - started
        assert not errors, errors[:3]
        assert results == {n: n for n in range(16)}
        assert elapsed < 8 * 0.4  # the eight slow calls overlapped
        assert len(server.connections()) == 1


def test_stop_drains_calls_in_flight_then_closes_with_the_drain_code() -> None:
    from hprose_cluster.transport.websocket import DRAIN_CLOSE

    server = make_server()
    server.start(block=False)
    results: list[object] = []
    with WebSocketClient(server.url, timeout=10) as client:
        assert client.hello("warm") == "Hello warm"
        slow = threading.Thread(target=lambda: results.append(client.sleep(0.5, "done")))
        slow.start()
        assert wait_for(lambda: server.in_flight == 1, 5)
        watcher, _ = connect(server)
        stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
        stopper.start()
        with watcher:  # an idle connection gets the drain close at once
            close = read_frame(watcher)
            assert close.opcode == 8 and close.payload[:2] == DRAIN_CLOSE.to_bytes(2, "big")
        slow.join(10)
        stopper.join(10)
        assert results == ["done"]
    assert server.in_flight == 0


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ws_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hprose-cluster-ws")}


def test_a_client_leaving_mid_call_and_stop_leave_no_thread_behind() -> None:
    before = ws_threads()
    server = make_server()
    server.start(block=False)
    sock, _ = connect(server)
    with sock:  # a request running when its client goes away: the reply is dropped
        sock.sendall(request(1, b'Cs5"sleep"a2{d0.3;s4"gone"}z'))
        assert wait_for(lambda: server.in_flight == 1, 5)
    with WebSocketClient(server.url, timeout=5) as client:
        assert client.hello("x") == "Hello x"
        assert wait_for(lambda: server.in_flight == 0, 5)
        server.stop(drain_timeout=2)
        with pytest.raises(ConnectError):  # drained, then nothing listens
            client.hello("after stop")
    assert wait_for(lambda: not ws_threads() - before, 5), ws_threads() - before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_blocking_start_stops_gracefully_on_signal(sig: int) -> None:
    script = ("import sys\n"
              "from hprose_cluster.transport.websocket import WebSocketServer\n"
              "server = WebSocketServer('127.0.0.1', 0)\n"
              "server.addFunction(lambda: 'pong', 'ping')\n"
              "server.listen()\n"
              "print(server.url, flush=True)\n"
              "server.start()\n"
              "print('stopped', server.serving_state.value, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with WebSocketClient(url, timeout=10) as client:
            assert client.ping() == "pong"
            proc.send_signal(sig)
            assert proc.wait(20) == 0
        assert proc.stdout.read().strip() == "stopped stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

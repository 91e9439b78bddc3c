"""HTTP transport, server side: stop and drain, hooks, signals, malformed and chunked requests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hprose_cluster.errors import ConnectError, TransportError
from hprose_cluster.transport.http import HttpClient, HttpServer

from support.http import Servers, http_threads, raw_exchange

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------------------ stop, drain


def test_stop_drains_a_call_in_progress_and_leaves_no_thread(servers: Servers) -> None:
    server = servers()
    result: list[Any] = []
    with HttpClient(server.url) as client:
        caller = threading.Thread(target=lambda: result.append(client.slow(0.5)))
        caller.start()
        assert servers.started.wait(5)
        assert server.in_flight == 1
        server.stop(drain_timeout=5)
        caller.join(5)
        assert result == ["done"]
        assert server.in_flight == 0
        assert http_threads() == []
        with pytest.raises(ConnectError):  # no longer accepting
            client.hello("late")
    server.stop()  # idempotent


def test_request_outliving_drain_timeout_fails_as_sent_not_retried(servers: Servers) -> None:
    """On a kept-alive connection, a silent close would look stale and be retried (and then
    reported as never sent); the server answers 503 instead."""
    server = servers()
    with HttpClient(server.url) as client:
        client.hello("warm")  # the slow call below reuses this connection
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.slow(3)
            except BaseException as error:  # checked below
                errors.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        assert servers.started.wait(5)
        server.stop(drain_timeout=0.2)
        caller.join(5)
    servers.release.set()
    assert len(errors) == 1 and type(errors[0]) is TransportError, errors
    assert errors[0].sent is True and "503" in str(errors[0])


def test_stop_closes_idle_keep_alive_connections_at_once(server: HttpServer) -> None:
    with HttpClient(server.url) as client:
        client.hello("x")  # leaves an idle keep-alive connection open on the server
        start = time.monotonic()
        server.stop(drain_timeout=5)
        assert time.monotonic() - start < 1.5
    assert http_threads() == []


def test_stop_closes_idle_connections_while_draining(servers: Servers) -> None:
    """stop(): an idle keep-alive connection is closed at once, while a running request is
    finished and answered with "Connection: close"."""
    server = servers()

    def post(body: bytes) -> bytes:
        return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    with socket.create_connection(server.address, timeout=5) as idle, \
            socket.create_connection(server.address, timeout=5) as busy:
        idle.sendall(post(b'Cs5"hello"a1{s1"a"}z'))
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")  # now idle, kept alive
        busy.sendall(post(b'Cs4"slow"a1{5}z'))
        assert servers.started.wait(5)
        stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
        stopper.start()
        idle.settimeout(2)
        assert idle.recv(100) == b""  # closed at once, while the slow call still runs
        assert stopper.is_alive() and server.in_flight == 1
        servers.release.set()
        reply = b""
        while chunk := busy.recv(65536):
            reply += chunk
        stopper.join(5)
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b'Rs4"done"z')
    assert b"\r\nConnection: close\r\n" in reply
    assert http_threads() == []


def test_stop_called_by_a_service_function_answers_it(servers: Servers) -> None:
    server = servers()
    server.addFunction(lambda: server.stop(drain_timeout=5) or "bye", "shutdown")
    with HttpClient(server.url) as client:
        start = time.monotonic()
        assert client.shutdown() == "bye"
        assert time.monotonic() - start < 2  # it did not wait for itself to drain
    with pytest.raises(RuntimeError, match="stopped"):
        server.start(block=False)


def test_hooks_and_listen(servers: Servers) -> None:
    calls = []

    class Hooked(HttpServer):
        def _on_listening(self) -> None:
            calls.append(("listening", self.url))

        def _before_stop(self) -> None:
            calls.append(("before_stop", self.in_flight))

    server = Hooked("127.0.0.1", 0)
    server.listen()
    server.listen()
    assert server.address[1] != 0 and server.scheme == "http"
    server.start(block=False)
    assert [t for t in http_threads() if t.startswith("hprose-cluster-http-serve")]
    server.stop()
    server.stop()
    assert calls == [("listening", server.url), ("before_stop", 0)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_blocking_start_gracefully(signum: int) -> None:
    code = textwrap.dedent("""
        import sys
        from hprose_cluster.transport.http import HttpServer
        server = HttpServer("127.0.0.1", 0)
        server._on_listening = lambda: print(server.url, flush=True)
        server.start()
        print("returned", server.in_flight, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=5) as response:  # it serves
            assert response.read() == b"Fa{}z"
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "returned 0"
    assert "Traceback" not in err


# ------------------------------------------------------------------------- malformed requests


def test_oversized_content_length_gets_413_without_reading_body(servers: Servers) -> None:
    server = servers(max_body=1000)
    # No body is sent: if the server tried to read (or allocate) it, no reply would come.
    reply = raw_exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in reply
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"411"),
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nzzzz", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"1\r\nz\r\n0\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", b"501"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nz\r\n0\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nzz\r\n0\r\n\r\n", b"400"),
    (b"this is not http\r\n\r\n", b"400"),
    (b"GET /\r\n", b"400"),
    (b"POST / HTTP/9.9\r\nContent-Length: 1\r\n\r\nz", b"505"),
    (b"BREW / HTTP/1.1\r\n\r\n", b"501"),
])
def test_malformed_requests_get_4xx_and_server_keeps_serving(
        server: HttpServer, request_bytes: bytes, status: bytes) -> None:
    reply = raw_exchange(server, request_bytes)
    assert reply.split(b" ", 2)[1] == status, reply
    with HttpClient(server.url) as client:
        assert client.hello("still") == "Hello still"


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` as chunks of ``sizes`` (the rest in one more chunk), with an extension and a
    trailer to skip."""
    out, start = [], 0
    for size in sizes + [len(body)]:
        piece = body[start:start + size]
        start += len(piece)
        if piece:
            out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
    return b"".join(out) + b"0\r\nX-Trailer: 1\r\n\r\n"


def test_a_chunked_body_is_read_and_the_connection_kept(server: HttpServer) -> None:
    body = b'Cs5"hello"a1{s1"a"}z'
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + _chunked(body, [3, 1, 7]))
    plain = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply = raw_exchange(server, chunked + plain)  # two requests on one connection
    assert reply.count(b"HTTP/1.1 200 OK") == 2, reply
    assert reply.count(b'Rs7"Hello a"z') == 2, reply


def test_a_chunked_body_over_max_body_gets_413_before_it_is_all_read(servers: Servers) -> None:
    server = servers(max_body=1000)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # 600 + 600 bytes: the second chunk size line alone is enough to refuse
    reply = raw_exchange(server, head + b"258\r\n" + b"x" * 600 + b"\r\n258\r\n")
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:100]
    with HttpClient(server.url) as client:
        assert client.hello("still") == "Hello still"


def test_raw_keep_alive_pipeline_gets_two_answers(server: HttpServer) -> None:
    body = b'Cs5"hello"a1{s1"a"}z'
    one = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply = raw_exchange(server, one + one)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.count(b'Rs7"Hello a"z') == 2



"""The drain delay of the one serving lifecycle, for every server transport: while
``before_stop()`` runs (the cluster server deregisters, then waits its drain delay) the server
still accepts new connections and serves them, kept-alive connections too; only after it does
the server stop accepting and close its idle connections.  Also when the stop comes from a
SIGTERM to a blocking ``start()`` in the main thread, which leaves its accept loop to stop.

Each drain here is held open by the test (an event, a line on stdin), never a fixed sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from hprose_cluster.errors import ConnectError
from hprose_cluster.transport.connection import State
from hprose_cluster.transport.http import HttpClient, HttpServer
from hprose_cluster.transport.tcp import TcpClient, TcpServer
from hprose_cluster.transport.unix import UnixClient, UnixServer
from hprose_cluster.transport.websocket import WebSocketClient, WebSocketServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]

CLIENTS: dict[str, Callable[..., Any]] = {"http": HttpClient, "tcp": TcpClient,
                                          "ws": WebSocketClient, "unix": UnixClient}


def make(transport: str, tmp_path: Path) -> Any:
    if transport == "http":
        return HttpServer("127.0.0.1", 0)
    if transport == "tcp":
        return TcpServer("127.0.0.1", 0)
    if transport == "ws":
        return WebSocketServer("127.0.0.1", 0)
    return UnixServer(str(tmp_path / "drain.sock"))


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within %ss" % timeout
        time.sleep(0.01)


@pytest.mark.parametrize("transport", ["http", "tcp", "ws", "unix"])
def test_new_and_kept_connections_are_served_during_the_drain_delay(transport: str,
                                                                    tmp_path: Path) -> None:
    server = make(transport, tmp_path)
    server.addFunction(lambda name: "Hello " + name, "hello")
    draining, release = threading.Event(), threading.Event()

    def before_stop() -> None:  # what ClusterServer does: deregister, then the drain delay
        draining.set()
        assert release.wait(30)

    server._before_stop = before_stop
    server.start(block=False)
    url = server.url
    client = CLIENTS[transport](url, timeout=10)
    stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
    try:
        assert client.hello("before") == "Hello before"  # a connection kept for reuse
        stopper.start()
        assert draining.wait(10)
        assert server.serving_state is State.DRAINING
        for i in range(3):  # the kept connection goes on serving...
            assert client.hello("kept %d" % i) == "Hello kept %d" % i
        for i in range(3):  # ...and new ones are accepted and served, each a new client
            with CLIENTS[transport](url, timeout=10) as fresh:
                assert fresh.hello("new %d" % i) == "Hello new %d" % i
        release.set()
        stopper.join(20)
        assert not stopper.is_alive()
        assert server.serving_state is State.STOPPED
        with CLIENTS[transport](url, timeout=5) as late:  # only now: refused, nothing sent
            with pytest.raises(ConnectError):
                late.hello("late")
    finally:
        release.set()
        client.close()
        stopper.join(20) if stopper.is_alive() else None
        server.stop(drain_timeout=1)


def _post(sock: socket.socket, host: str) -> bytes:
    body = b'Cs5"hello"a1{s1"x"}z'
    sock.sendall(b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (host.encode(), len(body), body))
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.endswith(b"z"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def test_http_replies_keep_the_connection_alive_during_the_drain_and_idle_ones_close_after(
        ) -> None:
    """Keep-alive during the drain delay (no ``Connection: close``: a client would replace the
    connection with a new one just as the listener is about to close); after it, an idle
    kept-alive connection is closed by the server."""
    server = HttpServer("127.0.0.1", 0)
    server.addFunction(lambda name: "Hello " + name, "hello")
    draining, release = threading.Event(), threading.Event()

    def before_stop() -> None:
        draining.set()
        assert release.wait(30)

    server._before_stop = before_stop
    server.start(block=False)
    host = "%s:%d" % server.address[:2]
    stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            assert b"Hello x" in _post(sock, host)
            stopper.start()
            assert draining.wait(10)
            reply = _post(sock, host)
            assert reply.startswith(b"HTTP/1.1 200") and b"Hello x" in reply
            assert b"connection: close" not in reply.lower()
            release.set()
            wait_for(lambda: server.serving_state is State.STOPPED)
            assert sock.recv(1) == b""  # closed by the server once the drain delay was over
    finally:
        release.set()
        stopper.join(20) if stopper.is_alive() else None
        server.stop(drain_timeout=1)


SCRIPT = textwrap.dedent("""
    import sys
    from hprose_cluster.transport.http import HttpServer
    from hprose_cluster.transport.tcp import TcpServer
    from hprose_cluster.transport.websocket import WebSocketServer

    class Server({cls}):
        def _before_stop(self):
            print("DRAINING", flush=True)
            sys.stdin.readline()  # the drain delay lasts until the test says so
            print("DRAINED", flush=True)

    server = Server("127.0.0.1", 0)
    server.addFunction(lambda name: "Hello " + name, "hello")
    server.listen()
    print(server.url, flush=True)
    server.start()
    print("RETURNED", server.serving_state.value, flush=True)
""")


@pytest.mark.parametrize("cls", ["HttpServer", "TcpServer", "WebSocketServer"])
def test_after_a_sigterm_a_blocking_start_accepts_until_the_drain_delay_is_over(cls: str
                                                                                ) -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT.format(cls=cls)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert process.stdout is not None and process.stdin is not None
        url = process.stdout.readline().strip()
        client_cls = {"HttpServer": HttpClient, "TcpServer": TcpClient,
                      "WebSocketServer": WebSocketClient}[cls]
        with client_cls(url, timeout=10) as client:
            assert client.hello("up") == "Hello up"
        process.send_signal(15)
        assert process.stdout.readline().strip() == "DRAINING"
        for i in range(3):  # the main thread is in stop(): a drain thread accepts
            with client_cls(url, timeout=10) as client:
                assert client.hello("drain %d" % i) == "Hello drain %d" % i
        process.stdin.write("go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert out.split() == ["DRAINED", "RETURNED", "stopped"], (out, err)
    assert process.returncode == 0, err

"""HTTP test servers with a small service, shared by the HTTP transport tests."""

from __future__ import annotations

import socket
import threading
from typing import Any

from hprose_cluster.transport.http import HttpServer


def http_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hprose-cluster-http-")]


def add_service(server: HttpServer, release: threading.Event, started: threading.Event) -> None:
    def hello(name: str) -> str:
        return "Hello " + name

    def sum(a: int, b: int) -> int:  # noqa: A001 - the remote name
        return a + b

    def fail() -> None:
        raise ValueError("boom")

    def port(context: dict) -> str:
        return context["REMOTE_PORT"]

    def slow(seconds: float) -> str:
        started.set()
        release.wait(seconds)
        return "done"

    def big(n: int) -> str:
        return "x" * n

    for function in (hello, sum, fail, port, slow, big):
        server.addFunction(function)


class Servers:
    """Starts HttpServers with the test service; stops them all at teardown."""

    def __init__(self) -> None:
        self.servers: list[HttpServer] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, host: str = "127.0.0.1", **options: Any) -> HttpServer:
        server = HttpServer(host, 0, **options)
        add_service(server, self.release, self.started)
        server.start(block=False)
        self.servers.append(server)
        return server

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.stop(drain_timeout=2)



def raw_exchange(server: HttpServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, stop writing, return everything until EOF."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

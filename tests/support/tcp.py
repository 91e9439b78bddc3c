"""TCP test servers and thread accounting, shared by the TCP transport tests."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from hprose_cluster.embedded import free_port  # noqa: F401 - for the TCP tests
from hprose_cluster.transport.tcp import TcpServer


def our_threads() -> set[threading.Thread]:
    """Live TCP transport threads (objects, so other tests' leftovers are told apart)."""
    return {t for t in threading.enumerate() if t.name.startswith("hprose-cluster-tcp")}


def make_server(host: str = "127.0.0.1", **kwargs: object) -> TcpServer:
    server = TcpServer(host, 0, **kwargs)  # type: ignore[arg-type]
    state = {"max_in_flight": 0}
    lock = threading.Lock()

    def hello(name: str) -> str:
        return "Hello " + name

    def echo(value: object) -> object:
        return value

    def slow(seconds: float, value: object) -> object:
        with lock:
            state["max_in_flight"] = max(state["max_in_flight"], server.in_flight)
        time.sleep(seconds)
        return value

    def blob(size: int) -> str:
        return "x" * size

    server.add(hello)
    server.add(echo)
    server.add(slow)
    server.add(blob)
    server.state = state  # type: ignore[attr-defined]
    return server


@contextlib.contextmanager
def restarted(server: TcpServer) -> Iterator[TcpServer]:
    """Stop ``server`` and start a new test server on its port (as a restarted server would
    be); the new one is stopped on the way out.  Connections to the old one are now dead."""
    port = server.address[1]  # type: ignore[index]
    server.stop()
    again = make_server()
    again.port = port
    again.start(block=False)
    try:
        yield again
    finally:
        again.stop()

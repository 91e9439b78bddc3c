"""What the registration, discovery, failover and drain tests share: short settings, a
registrar for a given URL, a selector with a fixed order, and in-process servers that count
their calls.

Short settings: ttl=2, heartbeat=0.5, check_interval=0.5, max_backoff=3.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Collection, Iterator

import pytest

from hprose_cluster import ClusterTcpServer, Registrar, ServerInfo

TTL = 2
HEARTBEAT = 0.5
MAX_BACKOFF = 3.0
CHECK = 0.5


def new_registrar(domain: str, endpoint: str, url: str = "tcp://127.0.0.1:9") -> Registrar:
    return Registrar(ServerInfo(domain, url), etcd=endpoint, ttl=TTL, heartbeat=HEARTBEAT,
                     max_backoff=MAX_BACKOFF)


class Ordered:
    """A selector that tries servers in a fixed URL order (so a test knows who goes first)."""

    def __init__(self, *urls: str):
        self.urls = urls

    def pick(self, view: Any, exclude: Collection[str], ejector: Any) -> ServerInfo | None:
        by_url = {s.url: s for s in view.servers}
        for url in self.urls:
            server = by_url.get(url)
            if server is not None and server.uuid not in exclude:
                return server
        return None

    def failed(self, server: ServerInfo) -> None:
        pass


class Counting:
    """An in-process ClusterTcpServer whose functions count their executions."""

    def __init__(self, domain: str, endpoint: str, *, delay: float = 0.0, port: int = 0):
        self.calls = 0
        self.lock = threading.Lock()
        self.server = ClusterTcpServer(domain, port=port, etcd=endpoint, ttl=TTL,
                                       heartbeat=HEARTBEAT, drain_delay=0.2)

        def work(x: Any) -> Any:
            with self.lock:
                self.calls += 1
            time.sleep(delay)
            return x

        def fail() -> None:
            with self.lock:
                self.calls += 1
            raise Exception("business error")

        self.server.addFunction(work, "work")
        self.server.addFunction(fail, "fail")
        self.server.start(block=False)

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.stop(drain_timeout=1)


@pytest.fixture
def counting(etcd: Any, domain: str) -> Iterator[Any]:
    """A callable starting a :class:`Counting` server in ``domain``; all closed at teardown."""
    made: list[Counting] = []

    def make(**options: Any) -> Counting:
        made.append(Counting(domain, etcd.endpoint, **options))
        return made[-1]

    yield make
    for server in made:
        server.close()

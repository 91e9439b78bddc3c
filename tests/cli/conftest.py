"""Fixtures of the ``hprose-cluster`` command tests: servers to look at, commands to stop.

Servers are real ClusterTcpServer/ClusterHttpServer instances in this process (ttl=2,
heartbeat=0.5); etcd is the session's.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from hprose_cluster.demo import make_server
from hprose_cluster.embedded import EmbeddedEtcd
from tests.support.cli import Lines, unique


@pytest.fixture
def lines(etcd: EmbeddedEtcd) -> Iterator[Callable[..., Lines]]:
    """Start a long-running subcommand against the session etcd; killed at teardown."""
    started: list[Lines] = []

    def start(*args: str, **kwargs: Any) -> Lines:
        kwargs.setdefault("endpoint", etcd.endpoint)
        endpoint = kwargs.pop("endpoint")
        started.append(Lines(endpoint, *args, **kwargs))
        return started[-1]

    try:
        yield start
    finally:
        for item in started:
            item.close()


@pytest.fixture(scope="module")
def cluster(etcd: EmbeddedEtcd) -> Iterator[dict]:
    """Two TCP servers in one domain, one HTTP server in another (ttl=2, heartbeat=0.5)."""
    tcp_domain, http_domain = unique("tcp"), unique("http")
    servers = [make_server("tcp", tcp_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5),
               make_server("tcp", tcp_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5),
               make_server("http", http_domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5)]
    for server in servers:
        server.drain_delay = 0
        server.start(block=False)
    try:
        yield {"tcp": tcp_domain, "http": http_domain, "servers": servers,
               "endpoint": etcd.endpoint}
    finally:
        for server in servers:
            server.stop()


"""One EtcdConnection per process and configuration, shared by every registrar, server and
client that brings none of its own: one keepalive stream, one watcher, one scheduler.

Before, each ClusterServer built its own connection: 250 registrations in one process cost
1,500 threads.
"""

from __future__ import annotations

import threading
import time

import pytest

from hprose_cluster import ClusterClient, Discovery, EtcdConfig, EtcdError, Registrar, ServerInfo
from hprose_cluster.demo import make_server
from hprose_cluster.etcd import shared_connection
from hprose_cluster.transport.tcp import TcpServer

pytestmark = pytest.mark.timeout(120)


def _settled_thread_count(timeout: float = 10.0) -> int:
    """The thread count once it stopped moving (threads of closed things take a moment)."""
    deadline = time.monotonic() + timeout
    last = threading.active_count()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = threading.active_count()
        if now == last:
            return now
        last = now
    return last


def test_equal_configurations_share_one_connection_closed_by_its_last_user(etcd):
    first = shared_connection(EtcdConfig(etcd.endpoint))
    second = shared_connection(EtcdConfig(etcd.endpoint))  # equal, not the same object
    other = shared_connection(EtcdConfig(etcd.endpoint, timeout=2))
    try:
        assert first is second and first is not other
        first.get("x")
        first.close()
        second.get("x")  # still open: one user left
        second.close()
        with pytest.raises(EtcdError, match="closed"):
            second.get("x")
        fresh = shared_connection(EtcdConfig(etcd.endpoint))
        assert fresh is not first
        fresh.get("x")
        fresh.close()
    finally:
        other.close()


def test_250_registrars_of_one_process_cost_a_few_threads(etcd, domain):
    config = EtcdConfig(etcd.endpoint)
    before = _settled_thread_count()
    registrars = [Registrar(ServerInfo(domain, "tcp://127.0.0.1:%d" % (i + 1)), etcd=config,
                            ttl=10, heartbeat=3) for i in range(250)]
    try:
        for registrar in registrars:
            registrar.start()
        with Discovery(domain, etcd=config) as discovery:
            assert discovery.wait_for_servers(10, count=250)
            time.sleep(3.5)  # every registrar has run its first step (watch, refresh)
            added = threading.active_count() - before
            assert len({id(r._connection) for r in registrars} |
                       {id(discovery._connection)}) == 1
    finally:
        for registrar in registrars:
            registrar.close()
    # the scheduler's workers (8 at most), the keepalive reader, the watcher, gRPC's own few
    assert added <= 16, "250 registrars added %d threads" % added
    assert _settled_thread_count() <= before, "closing the last user left threads running"


def test_servers_and_clients_of_one_process_share_the_connection(etcd, domain):
    """Ten ClusterTcpServers and a client: the threads they add beyond what ten plain
    TcpServers add are the shared connection's few."""
    config = EtcdConfig(etcd.endpoint)
    before = _settled_thread_count()
    plain = [TcpServer("127.0.0.1", 0) for _ in range(10)]
    servers = []
    try:
        for server in plain:
            server.start(block=False)
        transport_threads = _settled_thread_count() - before
        middle = threading.active_count()
        for _ in range(10):
            server = make_server("tcp", domain, etcd=config, ttl=10, heartbeat=3)  # type: ignore[arg-type]
            server.drain_delay = 0
            servers.append(server)
            server.start(block=False)
        with ClusterClient(domain, etcd=config) as client:
            assert client.discovery.wait_for_servers(10, count=10)
            assert client.hello("x") == "Hello x"
            time.sleep(3.5)  # the registrars' first steps
            added = threading.active_count() - middle - transport_threads
            connections = {id(s.registrar._connection) for s in servers}
            assert connections == {id(client.discovery._connection)}
    finally:
        for server in servers:
            server.stop(drain_timeout=1)
        for server in plain:
            server.stop()
    assert added <= 16, "10 cluster servers and a client added %d threads for etcd" % added

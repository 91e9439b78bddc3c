"""Chaos, leaks: a hundred client and server cycles leave no thread, socket or etcd watch."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.chaos import HEARTBEAT, TTL, etcd_urls, make_client
from tests.support.cluster_procs import wait_until

pytestmark = [pytest.mark.slow]


def _etcd_watchers(etcd) -> int:
    import urllib.request
    with urllib.request.urlopen(etcd.client_url + "/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd exposes no watcher count")


def _fds() -> int:
    import os
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(240)
def test_100_client_and_server_cycles_leave_no_thread_socket_or_watch(etcd_factory, domain):
    from hprose_cluster import ClusterTcpServer

    etcd = etcd_factory()

    def cycle() -> None:
        server = ClusterTcpServer(domain, etcd=etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT,
                                  drain_delay=0)
        server.addFunction(lambda name: "Hello " + name, "hello")
        server.start(block=False)
        with make_client(domain, etcd.endpoint) as client:
            assert client.discovery.wait_for_servers(5)
            assert client.hello("x") == "Hello x"
        server.stop()

    cycle()  # warm up: lazily created module-level things (gRPC's own threads) exist now
    time.sleep(0.5)
    threads, fds, watchers = threading.active_count(), _fds(), _etcd_watchers(etcd)
    for _ in range(100):
        cycle()
    assert wait_until(lambda: threading.active_count() <= threads, 10), \
        sorted(t.name for t in threading.enumerate())
    assert wait_until(lambda: _fds() <= fds, 10), (fds, _fds())
    assert wait_until(lambda: _etcd_watchers(etcd) <= watchers, 10), \
        (watchers, _etcd_watchers(etcd))
    assert etcd_urls(etcd.endpoint, domain) == set()

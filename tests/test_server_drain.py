"""Drain: a draining server leaves the registry first, then finishes the calls in flight."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hprose_cluster import ClusterClient

from tests.support.cluster_procs import wait_until
from tests.support.resilience import CHECK
from tests.support.resilience import counting  # noqa: F401 - a fixture


@pytest.mark.timeout(30)
def test_drain_leaves_the_registry_first_and_finishes_calls_in_flight(etcd, domain, counting):
    # The call lasts 4 s, so that "gone while still busy" holds on a loaded machine too: with
    # 1 s, the wait for the call to start, the drainer and the watch could take the whole second
    # and the call was over before the check.  Gone within 2 s: the lease is kept alive, so only
    # the drain's revoke removes the record.
    slow = counting(delay=4.0)
    with ClusterClient(domain, etcd=etcd.endpoint, check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5)
        result: list[Any] = []
        caller = threading.Thread(target=lambda: result.append(client.work("x")))
        caller.start()
        assert wait_until(lambda: slow.server.in_flight == 1, 5)
        drainer = threading.Thread(target=slow.server.drain)
        drainer.start()
        assert client.discovery.wait_for(lambda v: len(v) == 0, 2.0)  # gone while still busy
        assert caller.is_alive()
        caller.join(10)
        drainer.join(10)
        assert result == ["x"]

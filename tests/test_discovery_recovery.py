"""Discovery against etcd servers that go away and come back: a replaced (wiped) cluster is
diffed so listeners see only real changes; after a restart on its data the watch follows on.

Short settings (tests.support.resilience): ttl=2, heartbeat=0.5, check_interval=0.5,
max_backoff=3.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hprose_cluster import Discovery, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.cluster_procs import wait_until
from tests.support.resilience import CHECK, MAX_BACKOFF, new_registrar


def _try(func: Any, *args: Any) -> bool:
    try:
        func(*args)
        return True
    except Exception:
        return False


@pytest.mark.timeout(60)
def test_a_replaced_cluster_is_diffed_and_listeners_see_only_real_changes(etcd_factory, domain):
    server = etcd_factory()
    infos = {name: ServerInfo(domain, "tcp://127.0.0.1:%d" % port)
             for name, port in (("a", 1001), ("b", 1002), ("c", 1003), ("d", 1004))}
    prefix = "hprose-service"

    def put(connection: EtcdConnection, *names: str) -> None:
        for name in names:
            connection.put(infos[name].key(prefix), infos[name].to_json())

    with EtcdConnection(EtcdConfig(server.endpoint)) as writer:
        put(writer, "a", "b", "c")
    changes: list[tuple[str, str]] = []
    with Discovery(domain, etcd=server.endpoint, check_interval=CHECK) as discovery:
        discovery.add_listener(lambda added, removed: changes.extend(
            [("+", s.url) for s in added] + [("-", s.url) for s in removed]))
        assert len(discovery.servers()) == 3
        server.stop()
        time.sleep(3 * CHECK)
        assert len(discovery.servers()) == 3  # the last known list is kept while etcd is away
        server.restart(wipe=True)  # a new cluster id, revisions start again from 1
        with EtcdConnection(EtcdConfig(server.endpoint)) as writer:
            # gRPC shares connections between channels in a process: this new one may see the
            # old one's reconnect backoff (at most 1 s) before it reaches the new etcd
            assert wait_until(lambda: _try(put, writer, "b", "c", "d"), 3)
        assert discovery.wait_for(
            lambda v: {s.url for s in v} == {infos[n].url for n in "bcd"}, MAX_BACKOFF + 5)
        time.sleep(2 * CHECK)
    assert sorted(changes) == [("+", infos["d"].url), ("-", infos["a"].url)]


@pytest.mark.timeout(60)
def test_discovery_follows_changes_after_etcd_restarts_on_its_data(etcd_factory, domain):
    server = etcd_factory()
    with Discovery(domain, etcd=server.endpoint, check_interval=CHECK) as discovery, \
            new_registrar(domain, server.endpoint, "tcp://127.0.0.1:2001"):
        assert discovery.wait_for_servers(5)
        server.kill()
        server.start()
        with new_registrar(domain, server.endpoint, "tcp://127.0.0.1:2002"):
            # the watch's reconnect backoff may have grown to max_backoff while etcd restarted
            # (slower on a loaded machine): the bound is max_backoff + 5 s, as above
            assert discovery.wait_for(lambda v: len(v) == 2, MAX_BACKOFF + 5)
        assert discovery.wait_for(lambda v: [s.url for s in v] == ["tcp://127.0.0.1:2001"], 5)

"""Discovery applies every event of a multi-key etcd revision (a transaction, a lease revoke).

All events of one transaction share one mod_revision; a view that skipped events "at or below
the last applied revision" kept only the first of them until the next periodic check.
"""

from __future__ import annotations

import pytest

from hprose_cluster import Discovery, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

pytestmark = pytest.mark.timeout(30)


def test_a_transaction_of_many_puts_and_its_lease_revoke_reach_the_view(etcd, domain):
    config = EtcdConfig(endpoints=etcd.endpoint)
    infos = [ServerInfo(domain, "tcp://127.0.0.1:%d" % (20000 + i), cpu=1) for i in range(50)]
    # check_interval far beyond the test: only the watch can bring these changes.
    with EtcdConnection(config) as connection, \
            Discovery(domain, etcd=config, check_interval=600) as discovery:
        lease = connection.grant(30)
        connection.put_many([(i.key(config.prefix), i.to_json()) for i in infos], lease)
        assert discovery.wait_for(lambda view: len(view) == 50, timeout=5), len(discovery.view)
        assert {s.uuid for s in discovery.servers()} == {i.uuid for i in infos}
        connection.revoke(lease)
        assert discovery.wait_for(lambda view: len(view) == 0, timeout=5), len(discovery.view)
        assert discovery.resyncs == 0


def test_listeners_of_a_burst_see_each_change_once_and_a_same_value_put_not_at_all(etcd, domain):
    """Changes are worked out from the keys a batch of watch responses touched: a transaction
    of 50 puts is 50 additions, rewriting a record with the same bytes is no change, and a
    lease revoke is 50 removals, each reported once, in key order."""
    config = EtcdConfig(endpoints=etcd.endpoint)
    infos = [ServerInfo(domain, "tcp://127.0.0.1:%d" % (20000 + i), cpu=1) for i in range(50)]
    keys = sorted(i.key(config.prefix) for i in infos)
    with EtcdConnection(config) as connection, \
            Discovery(domain, etcd=config, check_interval=600) as discovery:
        added: list[str] = []
        removed: list[str] = []
        calls: list[int] = []

        def listener(new: list[ServerInfo], gone: list[ServerInfo]) -> None:
            calls.append(len(new) + len(gone))
            added.extend(s.key(config.prefix) for s in new)
            removed.extend(s.key(config.prefix) for s in gone)

        discovery.add_listener(listener)
        lease = connection.grant(30)
        connection.put_many([(i.key(config.prefix), i.to_json()) for i in infos], lease)
        assert discovery.wait_for(lambda view: len(view) == 50, timeout=5)
        assert added == keys and removed == []
        before = len(calls)
        connection.put(infos[0].key(config.prefix), infos[0].to_json(), lease)  # same bytes
        marker = ServerInfo(domain, "tcp://127.0.0.1:19999", cpu=1)
        connection.put(marker.key(config.prefix), marker.to_json(), lease)
        assert discovery.wait_for(lambda view: marker.uuid in view, timeout=5)
        assert calls[before:] == [1]  # the marker only: the same-value put changed nothing
        connection.revoke(lease)
        assert discovery.wait_for(lambda view: len(view) == 0, timeout=5)
        assert sorted(removed) == sorted(keys + [marker.key(config.prefix)])
        assert len(removed) == len(set(removed))

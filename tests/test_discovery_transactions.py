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
        connection.call("txn", lambda c: c.transaction(
            compare=[], failure=[],
            success=[c.transactions.put(i.key(config.prefix), i.to_json(), lease=lease)
                     for i in infos]))
        assert discovery.wait_for(lambda view: len(view) == 50, timeout=5), len(discovery.view)
        assert {s.uuid for s in discovery.servers()} == {i.uuid for i in infos}
        connection.revoke(lease)
        assert discovery.wait_for(lambda view: len(view) == 0, timeout=5), len(discovery.view)
        assert discovery.resyncs == 0

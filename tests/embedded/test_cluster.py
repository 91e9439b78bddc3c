"""EtcdCluster, a static cluster of real etcd members: a leader killed, a member back."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import etcd3

from hprose_cluster.embedded import EtcdCluster

from tests.support.embedded import eventually, process_alive


def test_cluster_survives_leader_kill(etcd_cluster: EtcdCluster, client_for: Callable[..., etcd3.MultiEndpointEtcd3Client]) -> None:
    assert len(etcd_cluster.members) == 3
    assert len(set(etcd_cluster.endpoints)) == 3
    ids = {m.status()["header"]["cluster_id"] for m in etcd_cluster.members}
    assert len(ids) == 1, "the members formed more than one cluster"
    client = client_for(*etcd_cluster.endpoints, timeout=2)
    # retried as the later requests are: the first one also opens the channel to a just-formed
    # cluster, which on a loaded machine may take more than the 2 s (or meet an election)
    eventually(lambda: client.put("/before", b"1"), timeout=10)
    leader = etcd_cluster.leader_index()
    etcd_cluster.kill(leader)
    assert not etcd_cluster.members[leader].running
    new_leader = etcd_cluster.leader_index(timeout=5)
    assert new_leader != leader
    eventually(lambda: client.put("/after", b"2"), timeout=5)
    assert eventually(lambda: client.get("/before")[0], timeout=5) == b"1"
    assert eventually(lambda: client.get("/after")[0], timeout=5) == b"2"

    # the killed member rejoins with its data dir and catches up
    member = etcd_cluster.restart(leader)
    assert member.running
    only_it = client_for(member.endpoint)
    assert eventually(lambda: only_it.get("/after")[0], timeout=5) == b"2"
    assert member.status()["header"]["cluster_id"] in ids


def test_cluster_close_leaves_nothing(tmp_path: Path) -> None:
    cluster = EtcdCluster(3, base_dir=tmp_path)
    with cluster:
        pids = [m.pid for m in cluster.members]
        assert all(p is not None and process_alive(p) for p in pids)
    assert not any(process_alive(p) for p in pids if p is not None)
    assert (tmp_path / "m0" / "etcd.log").is_file()


"""A member cut off from its cluster (alive, answering its client port, without a leader).

A 3-member cluster on loopback; iptables rules on ``lo`` that match only this cluster's peer
ports cut one member off (``support.partition``).  What is connected to that member must move
to the majority: a Discovery sees the changes made there, a registrar keeps its record.
Both cases are run: the cut member a follower, and the cut member the leader (the majority
then elects a new one first).  The measured times are printed (``pytest -s``).
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from hprose_cluster import Discovery, Registrar, ServerInfo
from hprose_cluster.embedded import EtcdCluster
from hprose_cluster.errors import EtcdError
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.partition import PeerCut, partitionable_cluster, require_iptables, \
    wait_for_majority_leader

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROLES = ["follower", "leader"]


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    require_iptables()
    cluster = partitionable_cluster(3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def _cut_index(cluster: EtcdCluster, role: str) -> int:
    leader = cluster.leader_index()
    return leader if role == "leader" else (leader + 1) % len(cluster.members)


def _majority(cluster: EtcdCluster, cut: int) -> list[str]:
    return [m.endpoint for i, m in enumerate(cluster.members) if i != cut]


def _pinned(cluster: EtcdCluster, index: int, timeout: float = 5.0) -> EtcdConnection:
    """A connection knowing every member, whose requests go to member ``index`` first (etcd3
    picks one at random: the test must know which one to cut)."""
    member = cluster.members[index]
    connection = EtcdConnection(EtcdConfig([member.endpoint] + _majority(cluster, index),
                                           timeout=timeout))
    connection.call("pinning", lambda c: setattr(c, "_current_endpoint_label", member.endpoint))
    assert connection.current_endpoint == member.endpoint
    return connection


def _write(action, deadline: float) -> None:
    """Through the majority: a write sent just as the old leader is cut off may be lost with
    it (etcd answers it with a timeout); write again until it is in."""
    while True:
        try:
            action()
            return
        except EtcdError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.parametrize("role", ROLES)
def test_a_discovery_on_a_cut_off_member_sees_an_add_and_a_remove_within_5s(cluster, domain,
                                                                            role):
    index = _cut_index(cluster, role)
    gone = ServerInfo(domain, "tcp://127.0.0.1:1001", uuid="gone")
    added = ServerInfo(domain, "tcp://127.0.0.1:1002", uuid="added")
    majority = EtcdConfig(_majority(cluster, index), timeout=2)
    connection = _pinned(cluster, index)
    with EtcdConnection(majority) as writer, \
            Discovery(domain, connection=connection, check_interval=60) as discovery:
        try:
            writer.put(gone.key(), gone.to_json())
            assert discovery.wait_for(lambda view: "gone" in view, timeout=5)
            with PeerCut(cluster, index):
                cut_at = time.monotonic()
                wait_for_majority_leader(cluster, index, timeout=15)
                deadline = time.monotonic() + 20
                _write(lambda: writer.put(added.key(), added.to_json()), deadline)
                _write(lambda: writer.delete(gone.key()), deadline)
                written_at = time.monotonic()
                seen = discovery.wait_for(lambda view: set(view.by_uuid) == {"added"},
                                          timeout=5)
                seen_at = time.monotonic()
                frozen = cluster.members[index].status()["header"]["revision"]
                assert int(frozen) < writer.get_prefix(discovery.prefix).revision, \
                    "the cut member kept up with the majority: the cut did not work"
            assert seen, "changes made through the majority were not seen within 5 s " \
                         "(view: %s)" % sorted(discovery.view.by_uuid)
            assert connection.current_endpoint != cluster.members[index].endpoint
            print("\n[partition] cut %s: changes seen %.2f s after the write, %.2f s after "
                  "the cut" % (role, seen_at - written_at, seen_at - cut_at))
        finally:
            connection.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_registrar_on_a_cut_off_member_is_absent_at_most_one_ttl_plus_a_heartbeat(
        cluster, domain, role):
    ttl, heartbeat, cut_for = 2, 0.5, 8.0
    index = _cut_index(cluster, role)
    info = ServerInfo(domain, "tcp://127.0.0.1:1003", uuid="kept")
    connection = _pinned(cluster, index)
    absent_since: list[float] = []
    gaps: list[float] = []
    lock = threading.Lock()

    def track(new: list[ServerInfo], old: list[ServerInfo]) -> None:
        now = time.monotonic()
        with lock:
            if any(s.uuid == "kept" for s in old) and not absent_since:
                absent_since.append(now)
            if any(s.uuid == "kept" for s in new) and absent_since:
                gaps.append(now - absent_since.pop())

    observer = Discovery(domain, etcd=EtcdConfig(_majority(cluster, index), timeout=2))
    observer.add_listener(track)
    registrar = Registrar(info, connection=connection, ttl=ttl, heartbeat=heartbeat)
    try:
        registrar.start()
        observer.start()
        assert observer.wait_for(lambda view: "kept" in view, timeout=5)
        with PeerCut(cluster, index):
            cut_at = time.monotonic()
            time.sleep(cut_for)  # the observer records every absence meanwhile
            moved_at = time.monotonic()
            assert observer.wait_for(lambda view: "kept" in view, timeout=ttl + heartbeat)
        with lock:
            if absent_since:  # still absent at the end: count it too
                gaps.append(time.monotonic() - absent_since[0])
        assert connection.current_endpoint != cluster.members[index].endpoint
        longest = max(gaps, default=0.0)
        print("\n[partition] cut %s, ttl %d s, heartbeat %.1f s: record absent %d times, "
              "longest %.2f s (cut %.1f s)" % (role, ttl, heartbeat, len(gaps), longest,
                                               moved_at - cut_at))
        assert longest <= ttl + heartbeat, gaps
    finally:
        registrar.close()
        observer.close()
        connection.close()

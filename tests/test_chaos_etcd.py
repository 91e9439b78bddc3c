"""Chaos under load, etcd: real etcd and real hello server processes, 8 client threads calling
an idempotent function back to back, while etcd is SIGKILLed, wiped, paused, cut off from the
client and compacted, loses its leader, or stays away for two minutes.  Settings and bound:
tests.support.chaos.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.chaos import (CHECK, TTL, client_urls, etcd_urls, hello_load, make_client,
                                 under_load, wait_converged)
from tests.support.chaos import fleet_factory  # noqa: F401 - a fixture
from tests.support.cluster_procs import retried, wait_until

log = logging.getLogger("hprose_cluster.tests.chaos")

pytestmark = [pytest.mark.slow]


# ------------------------------------------------------------------ (c) etcd SIGKILL, same data


@pytest.mark.timeout(90)
def test_c_etcd_sigkilled_and_restarted_costs_no_call(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        etcd.kill()
        assert load.wait_calls(200)  # calls go on from the last known list
        assert client_urls(client) == fleet.urls()
        etcd.start()
        log.info("(c) views and etcd agree %.2f s after etcd returned",
                 wait_converged(client, etcd.endpoint, domain, fleet))
        assert load.wait_calls(200)
    assert not load.failures, load.describe_failures()


# ------------------------------------------------------------------- (d) etcd on an empty dir


@pytest.mark.timeout(90)
def test_d_etcd_restarted_empty_every_server_registers_again(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        etcd.restart(wipe=True)
        took = wait_converged(client, etcd.endpoint, domain, fleet)
        # the client noticed the new cluster and re-read it ...
        assert wait_until(lambda: client.discovery.resyncs >= 1, CHECK + 2)
        # ... and its watch follows the new cluster (not stuck at the old revision)
        fleet.servers[0].kill()
        fleet.start(1)
        wait_converged(client, etcd.endpoint, domain, fleet)
        assert load.wait_calls(200)
    log.info("(d) all back and agreed %.2f s after the empty etcd answered; %s",
             took, load.describe_failures())


# ------------------------------------------------------------------ (f) etcd paused past TTL


@pytest.mark.timeout(90)
def test_f_etcd_paused_past_ttl_costs_no_call(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        etcd.pause()
        time.sleep(TTL + 1.5)
        assert client_urls(client) == fleet.urls()  # the last known list is kept
        etcd.resume()
        log.info("(f) views and etcd agree %.2f s after etcd resumed",
                 wait_converged(client, etcd.endpoint, domain, fleet))
        assert load.wait_calls(200)
    assert not load.failures, load.describe_failures()


# ------------------------------------------------------- (e) compaction while the watch is cut


@pytest.mark.timeout(90)
def test_e_compaction_while_the_watcher_is_cut_off_is_repaired_by_a_resync(
        etcd_factory, fleet_factory, domain):
    """The client reaches etcd through a TCP proxy that the test cuts (a partition between that
    client and etcd only); the servers keep talking to etcd directly.  While the client is cut
    off, one server crashes (its record expires), a new one registers, other keys are written
    and the store is compacted past the revision the client's watch would resume from.  On
    reconnection the watch fails with "compacted": the client must re-read the prefix and tell
    its listeners exactly the real changes (the crashed server removed, the new one added, the
    survivors untouched)."""
    from tests.support.cluster_procs import TcpProxy

    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    fleet.start(3)
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    changes: list[tuple[str, str]] = []
    try:
        with make_client(domain, proxy.endpoint) as client:
            client.discovery.add_listener(
                lambda added, removed: changes.extend(
                    [("+", s.url) for s in added] + [("-", s.url) for s in removed]))
            assert client.discovery.wait_for_servers(10, count=3)
            resyncs = client.discovery.resyncs
            with hello_load(client) as load:
                assert load.wait_calls(200)
                proxy.cut()
                victim = fleet.servers[0]
                survivors = {s.url for s in fleet.servers[1:]}
                victim.kill()
                newcomer, = fleet.start(1)
                with EtcdConnection(EtcdConfig(etcd.endpoint)) as direct:
                    # the victim's lease: expiry <= ttl after its last keepalive, etcd revokes
                    # every 0.5 s; 1 s more than before for a loaded machine
                    assert wait_until(lambda: etcd_urls(etcd.endpoint, domain) == fleet.urls(),
                                      TTL + 3)
                    for i in range(20):
                        direct.put("unrelated/%d" % i, b"x")
                    revision = direct.get_prefix("unrelated/").revision
                    direct.compact(revision)
                assert victim.url in client_urls(client)  # really cut off: still stale
                proxy.restore()
                log.info("(e) view repaired %.2f s after the client could reach etcd again",
                         wait_converged(client, etcd.endpoint, domain, fleet))
                assert load.wait_calls(200)
            assert client.discovery.resyncs > resyncs
            assert ("-", victim.url) in changes and ("+", newcomer.url) in changes
            assert not [c for c in changes if c[1] in survivors]
            log.info("(e) %s", load.describe_failures())
    finally:
        proxy.close()


# ------------------------------------------------------ (h) the leader of a 3-member cluster


@pytest.mark.timeout(120)
def test_h_killing_the_etcd_leader_costs_no_call(etcd_cluster, fleet_factory, domain):
    endpoints = ",".join(etcd_cluster.endpoints)
    fleet = fleet_factory(domain, endpoints)
    with under_load(fleet, domain, endpoints, max_seconds=90) as (client, load):
        leader = etcd_cluster.leader_index()
        etcd_cluster.kill(leader)
        live = ",".join(m.endpoint for m in etcd_cluster.members if m.running)
        # registrations outlive several TTLs on the surviving members (one read of them,
        # retried if it fails: two members with a 100 ms election timeout on a loaded
        # machine may be between leaders for a moment, and the read then times out)
        time.sleep(2 * TTL)
        assert retried(lambda: etcd_urls(live, domain)) == fleet.urls()
        # discovery still follows: a crash and a newcomer show up in the view
        victim = fleet.servers[0]
        victim.kill()
        newcomer, = fleet.start(1)
        wait_converged(client, live, domain, fleet)
        assert newcomer.url in client_urls(client)
        assert load.wait_calls(200)
    assert not load.failures, load.describe_failures()


# ------------------------------------------------------------- etcd unreachable for minutes

OUTAGE = 120.0


def thread_count(pid: int) -> int:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no thread count for pid %d" % pid)


@pytest.mark.timeout(OUTAGE + 90)
def test_etcd_unreachable_for_two_minutes_costs_no_call_and_leaks_nothing(
        etcd_factory, fleet_factory, domain):
    """etcd SIGKILLed and left down for two minutes under load: calls carry on from the last
    known list, every process retries at its capped backoff without piling up threads or
    warnings, and views and etcd agree within BOUND of etcd's return."""
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    # a lighter load (about 400 calls a second) keeps every thread within its call budget
    with under_load(fleet, domain, etcd.endpoint, max_seconds=OUTAGE + 60,
                    pause=0.02) as (client, load):
        threads_before = {s.pid: thread_count(s.pid) for s in fleet.servers}
        client_threads_before = threading.active_count()
        etcd.kill()
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE:
            time.sleep(10)
            assert client_urls(client) == fleet.urls()  # the last known list is kept
            assert not load.failures, load.describe_failures()
        threads_during = {s.pid: thread_count(s.pid) for s in fleet.servers}
        client_threads_during = threading.active_count()
        etcd.start()
        took = wait_converged(client, etcd.endpoint, domain, fleet)
        assert load.wait_calls(200)
    log.info("outage: %d calls, views and etcd agree %.2f s after etcd returned", load.ok, took)
    assert not load.failures, load.describe_failures()
    for pid, before in threads_before.items():
        assert threads_during[pid] <= before + 2, (threads_before, threads_during)
    assert client_threads_during <= client_threads_before + 2
    for server in fleet.servers:
        # one warning per outage from the registrar (not one per retry); the lease-lost notice
        # and the reconnect bring it to a handful, whatever the length of the outage
        warnings = [line for line in server.log_tail(1000).splitlines() if "registration of" in line]
        log.info("server %s: threads %d -> %d during the outage; warnings: %s", server.url,
                 threads_before[server.pid], threads_during[server.pid], warnings)
        assert len(warnings) <= 3, warnings

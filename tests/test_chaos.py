"""Chaos under load: real etcd and real hello server processes, 8 client threads calling an
idempotent function back to back, while servers and etcd are killed, paused and restarted.

Settings: ttl=2, heartbeat=0.5 (servers), check_interval=0.5 (clients), max_backoff=3 (both).
The convergence bound used for views and registrations is
``BOUND = ttl + max_backoff + check_interval + slack`` (2 + 3 + 0.5 + 2.5 = 8 s): a lease expires
within ttl, the registrar is back within max_backoff of etcd answering, and a client view that
missed anything is repaired within check_interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Iterator

import pytest

from hprose_cluster import ClusterClient
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.record import ServerInfo

from tests.support.cluster_procs import Fleet, Load, wait_until

log = logging.getLogger("hprose_cluster.tests.chaos")

TTL = 2
HEARTBEAT = 0.5
CHECK = 0.5
MAX_BACKOFF = 3.0
BOUND = TTL + MAX_BACKOFF + CHECK + 2.5

pytestmark = [pytest.mark.slow]


def etcd_urls(endpoints: str, domain: str) -> set[str]:
    """The server URLs etcd holds for ``domain`` right now (a fresh connection each time)."""
    with EtcdConnection(EtcdConfig(endpoints, timeout=2.0)) as connection:
        response = connection.get_prefix("hprose-service/%s/" % domain)
        return {ServerInfo.from_json(kv.value, kv.key).url for kv in response.kvs}


def client_urls(client: ClusterClient) -> set[str]:
    return {s.url for s in client.servers()}


def make_client(domain: str, endpoints: str, **options: Any) -> ClusterClient:
    options.setdefault("idempotent", True)
    options.setdefault("timeout", 2.0)
    options.setdefault("check_interval", CHECK)
    return ClusterClient(domain, etcd=endpoints, **options)


@pytest.fixture
def fleet_factory() -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(domain: str, endpoints: str, **options: Any) -> Fleet:
        options.setdefault("ttl", TTL)
        options.setdefault("heartbeat", HEARTBEAT)
        fleet = Fleet(domain, endpoints, **options)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def converged(clients: list[ClusterClient], endpoints: str, domain: str, expected: set[str]) -> bool:
    try:
        in_etcd = etcd_urls(endpoints, domain)
    except Exception:
        return False
    return in_etcd == expected and all(client_urls(c) == expected for c in clients)


def wait_converged(client: ClusterClient, endpoints: str, domain: str, fleet: Fleet) -> float:
    """Assert that the client's view and etcd both hold exactly the fleet's servers within
    BOUND; return how many seconds that took."""
    started = time.monotonic()
    assert wait_until(lambda: converged([client], endpoints, domain, fleet.urls()), BOUND), \
        (etcd_urls(endpoints, domain), client_urls(client), fleet.urls())
    return time.monotonic() - started


def hello_load(client: ClusterClient, **options: Any) -> Load:
    return Load(lambda: client.hello("chaos"), threads=8, max_calls=50000,
                max_seconds=options.pop("max_seconds", 60.0), **options)


@contextlib.contextmanager
def under_load(fleet: Fleet, domain: str, endpoints: str, idempotent: bool = True,
               **load_options: Any) -> Iterator[Any]:
    """Three servers, one client and 8 threads calling through it; yields ``(client, load)``
    once 200 calls went through, and stops the load on the way out."""
    fleet.start(3)
    with make_client(domain, endpoints, idempotent=idempotent) as client:
        assert client.discovery.wait_for_servers(10, count=3)
        with hello_load(client, **load_options) as load:
            assert load.wait_calls(200)
            yield client, load


# ------------------------------------------------------------------------------- (a) SIGKILL


@pytest.mark.timeout(90)
def test_a_server_sigkilled_under_load_costs_no_call(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        victim = fleet.servers[0]
        victim.kill()
        started = time.monotonic()
        assert wait_until(lambda: victim.url not in client_urls(client), TTL + 2)
        gone_after = time.monotonic() - started
        assert load.wait_calls(200)
    log.info("(a) crashed server left the client's list after %.2f s", gone_after)
    assert not load.failures, load.describe_failures()
    assert client_urls(client) == fleet.urls()


# ------------------------------------------------------------------------ (b) rolling restart


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport,idempotent", [
    pytest.param("tcp", True, id="tcp-idempotent"),
    pytest.param("tcp", False, id="tcp-not-idempotent"),
    # HTTP: a connection carries one call at a time, so clients open new ones while a
    # server drains; they must be accepted and served until its drain delay is over
    pytest.param("http", False, id="http-not-idempotent"),
])
def test_b_rolling_restart_with_drain_costs_no_call(etcd_factory, fleet_factory, domain,
                                                    transport, idempotent):
    """Drain makes a rolling restart free even for calls that may not be retried once sent:
    clients stop choosing a server before it stops accepting calls."""
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint, transport=transport)
    with under_load(fleet, domain, etcd.endpoint, idempotent=idempotent,
                    max_seconds=90) as (client, load):
        for old in list(fleet.servers):
            started = time.monotonic()
            code = old.terminate()
            assert code == 0, old.log_tail()
            left = time.monotonic() - started
            assert old.url not in client_urls(client)  # gone before the process exited
            new, = fleet.start(1)
            assert wait_until(lambda: new.url in client_urls(client), 5)
            log.info("(b) %s drained and exited in %.2f s", old.url, left)
            assert load.wait_calls(100)
    assert not load.failures, load.describe_failures()
    assert client_urls(client) == fleet.urls()
    assert len(fleet.urls()) == 3


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


# --------------------------------------------------------------- (g) one server paused past TTL


@pytest.mark.timeout(90)
def test_g_server_paused_past_ttl_registers_again(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        victim = fleet.servers[0]
        victim.pause()
        assert wait_until(lambda: victim.url not in client_urls(client), TTL + 2)
        time.sleep(1.0)
        victim.resume()
        log.info("(g) paused server listed again %.2f s after it resumed",
                 wait_converged(client, etcd.endpoint, domain, fleet))
        assert load.wait_calls(200)
    log.info("(g) %s", load.describe_failures())
    assert len(client_urls(client)) == 3


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
                    assert wait_until(lambda: etcd_urls(etcd.endpoint, domain) == fleet.urls(),
                                      TTL + 2)
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
        # registrations outlive several TTLs on the surviving members
        time.sleep(2 * TTL)
        assert etcd_urls(live, domain) == fleet.urls()
        # discovery still follows: a crash and a newcomer show up in the view
        victim = fleet.servers[0]
        victim.kill()
        newcomer, = fleet.start(1)
        wait_converged(client, live, domain, fleet)
        assert newcomer.url in client_urls(client)
        assert load.wait_calls(200)
    assert not load.failures, load.describe_failures()


# --------------------------------------------------------------------------- leaks


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

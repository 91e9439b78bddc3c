"""Registration and discovery against a real etcd: what lands in etcd, and how fast clients see it."""

from __future__ import annotations

import logging
import time

import pytest

from hprose_cluster import Discovery, EtcdError, Registrar, RegistrationError, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.cluster_procs import ServerProc


@pytest.fixture
def conn(etcd):
    with EtcdConnection(EtcdConfig.coerce(etcd.endpoint)) as connection:
        yield connection


def test_server_record_is_stored_byte_for_byte(etcd, domain, hello_servers, conn):
    server = hello_servers(domain, "tcp", uuid="fixed-uuid", cpu=4)
    response = conn.get("hprose-service/%s/fixed-uuid" % domain)
    assert len(response.kvs) == 1
    expected = ('{"UUID":"fixed-uuid","Domain":"%s","ServerUrl":"%s","CPU":4}'
                % (domain, server.url)).encode()
    assert response.kvs[0].value == expected
    assert server.url.startswith("tcp4://127.0.0.1:") and not server.url.endswith(":0")
    assert response.kvs[0].lease != 0
    assert 0 < conn.lease_ttl(response.kvs[0].lease) <= 2


def test_registrar_registers_any_url_and_revokes_on_close(etcd, domain, conn):
    info = ServerInfo(domain, "tcp://127.0.0.1:1234", uuid="go-peer", cpu=2)
    with Registrar(info, etcd=etcd.endpoint, ttl=2, heartbeat=0.5) as registrar:
        assert conn.get(registrar.key).kvs[0].value == info.to_json()
        time.sleep(2.5)  # longer than the TTL: the keepalive holds it
        assert conn.get(registrar.key).kvs, "the record expired although it was kept alive"
    assert not conn.get(info.key()).kvs, "close() did not remove the record at once"


# "At once" means through the watch: faster than the Discovery's periodic check (its default
# check_interval, 5 s) and than the lease running out (ttl=10 here).  The bound (3 s) leaves a
# loaded machine time to schedule the server, etcd and the watcher thread; with the fixture's
# ttl=2 a bound of 0.5 s was both tight (a starved watcher) and no proof of the watch.
AT_ONCE = 3.0


def test_visible_at_once_after_start_and_gone_at_once_after_stop(etcd, domain, hello_servers):
    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        seen = []
        discovery.add_listener(lambda added, removed: seen.append(time.monotonic()))
        before = time.monotonic()
        server = hello_servers(domain, "http", ttl=10)
        assert discovery.wait_for(lambda v: server.uuid in v, timeout=AT_ONCE)
        assert seen and seen[0] - before < AT_ONCE
        server.stop()
        assert discovery.wait_for(lambda v: server.uuid not in v, timeout=AT_ONCE), \
            "a stopped server stayed listed"


def test_sigkilled_server_is_gone_within_ttl_plus_two_seconds(etcd, domain):
    # The lease runs out at most ttl after the last keepalive; etcd revokes expired leases
    # every 0.5 s, and the delete then goes through the watch.  ttl + 1 left 0.5 s for a
    # loaded machine (etcd, the watcher thread); ttl + 2 still fails a record that outlives
    # its lease (periodic check: 5 s, or never).
    with ServerProc(domain, etcd.endpoint, ttl=2, heartbeat=0.5).start() as server, \
            Discovery(domain, etcd=etcd.endpoint) as discovery:
        assert discovery.wait_for(lambda v: [s.url for s in v] == [server.url], timeout=5)
        server.kill()
        killed = time.monotonic()
        assert discovery.wait_for(lambda v: len(v) == 0, timeout=2 + 2.0 + 0.5)
        assert time.monotonic() - killed <= 2 + 2.0


def test_domains_a_and_ab_are_kept_apart(etcd, domain, hello_servers):
    a, ab = hello_servers(domain, "tcp"), hello_servers(domain + "b", "tcp")
    with Discovery(domain, etcd=etcd.endpoint) as view_a, \
            Discovery(domain + "b", etcd=etcd.endpoint) as view_ab:
        assert [s.url for s in view_a.servers()] == [a.url]
        assert [s.url for s in view_ab.servers()] == [ab.url]
        late = hello_servers(domain + "b", "tcp")
        assert view_ab.wait_for(lambda v: late.uuid in v, timeout=AT_ONCE)
        time.sleep(0.2)
        assert [s.url for s in view_a.servers()] == [a.url]


def test_listeners_see_added_and_removed(etcd, domain, conn):
    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        changes = []
        discovery.add_listener(lambda added, removed: changes.append(
            ([s.uuid for s in added], [s.uuid for s in removed])))
        info = ServerInfo(domain, "http://127.0.0.1:9/", uuid="one")
        conn.put(info.key(), info.to_json())
        assert discovery.wait_for(lambda v: "one" in v, timeout=AT_ONCE)
        moved = ServerInfo(domain, "http://127.0.0.1:10/", uuid="one")
        conn.put(moved.key(), moved.to_json())
        assert discovery.wait_for(lambda v: v.by_uuid.get("one") == moved, timeout=AT_ONCE)
        conn.delete(info.key())
        assert discovery.wait_for(lambda v: len(v) == 0, timeout=AT_ONCE)
        assert changes == [(["one"], []), (["one"], ["one"]), ([], ["one"])]


def test_malformed_record_is_skipped_with_one_warning(etcd, domain, conn, caplog):
    good = ServerInfo(domain, "http://127.0.0.1:9/", uuid="good")
    conn.put(good.key(), good.to_json())
    conn.put("hprose-service/%s/bad" % domain, b"{not json")
    caplog.set_level(logging.WARNING, logger="hprose_cluster.discovery")
    with Discovery(domain, etcd=etcd.endpoint, check_interval=0.1) as discovery:
        assert [s.uuid for s in discovery.servers()] == ["good"]
        time.sleep(0.5)  # several periodic checks: no re-warning, no resync loop
        assert discovery.resyncs == 0
    warnings = [r for r in caplog.records if "bad" in r.getMessage()]
    assert len(warnings) == 1 and "not valid JSON" in warnings[0].getMessage()


def test_wait_for_servers_times_out_on_an_empty_domain(etcd, domain):
    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        started = time.monotonic()
        assert discovery.wait_for_servers(timeout=0.3) is False
        assert 0.25 < time.monotonic() - started < 2


def test_unreachable_etcd_fails_fast_naming_the_endpoint(domain):
    from hprose_cluster.embedded import free_port
    endpoint = "127.0.0.1:%d" % free_port()
    config = EtcdConfig(endpoints=(endpoint,), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(EtcdError, match=endpoint):
        Discovery(domain, etcd=config).start()
    with pytest.raises(RegistrationError, match=endpoint):
        Registrar(ServerInfo(domain, "http://127.0.0.1:9/"), etcd=config).start()
    assert time.monotonic() - started < 5


def test_endpoints_come_from_the_environment(etcd, domain, monkeypatch, conn):
    monkeypatch.setenv("HPROSE_CLUSTER_ETCD", "http://%s" % etcd.endpoint)
    info = ServerInfo(domain, "http://127.0.0.1:9/", uuid="env")
    with Registrar(info, ttl=2, heartbeat=0.5):
        assert conn.get(info.key()).kvs
        with Discovery(domain) as discovery:
            assert [s.uuid for s in discovery.servers()] == ["env"]


def test_discovery_of_every_domain(etcd, domain, hello_servers):
    one, two = hello_servers(domain, "tcp"), hello_servers(domain + "b", "http", ttl=10)
    with Discovery(None, etcd=etcd.endpoint) as everything:
        urls = {s.url for s in everything.servers()}
        assert {one.url, two.url} <= urls
        two.stop()  # seen through the watch: before the lease (ttl=10) or a check (5 s)
        assert everything.wait_for(lambda v: two.uuid not in v, timeout=AT_ONCE)
        assert one.uuid in everything.view


def test_a_wildcard_bind_advertises_a_reachable_address(etcd, domain, hello_servers):
    server = hello_servers(domain, "tcp", host="0.0.0.0")
    assert server.address[0] == "0.0.0.0"
    assert server.url.startswith("tcp4://") and "0.0.0.0" not in server.url
    assert server.url.endswith(":%d" % server.address[1])
    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        assert [s.url for s in discovery.servers()] == [server.url]


def test_advertise_url_overrides_the_bound_address(etcd, domain, hello_servers):
    server = hello_servers(domain, "http", advertise_url="http://svc.example.internal:8080/")
    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        assert [s.url for s in discovery.servers()] == ["http://svc.example.internal:8080/"]
    assert server.address[0] == "127.0.0.1"

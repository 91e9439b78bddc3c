"""Registration against real etcd servers: leases revoked, keys deleted, etcd restarted (same
data, empty data), etcd away for a while, the server process paused past its TTL.

Short settings (tests.support.resilience): ttl=2, heartbeat=0.5, check_interval=0.5,
max_backoff=3.
"""

from __future__ import annotations

import time

import pytest

from hprose_cluster import Discovery, Registrar, ServerInfo
from hprose_cluster.errors import ConfigError
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.cluster_procs import Fleet, wait_until
from tests.support.resilience import CHECK, HEARTBEAT, MAX_BACKOFF, TTL, new_registrar


def record_value(endpoint: str, key: str) -> bytes | None:
    with EtcdConnection(EtcdConfig(endpoint, timeout=2.0)) as connection:
        response = connection.get(key)
        return response.kvs[0].value if response.kvs else None


def registered(registrar: Registrar, endpoint: str) -> bool:
    try:
        return record_value(endpoint, registrar.key) == registrar.info.to_json()
    except Exception:
        return False


@pytest.mark.timeout(30)
def test_a_revoked_lease_is_replaced_by_a_live_one(etcd, domain):
    with new_registrar(domain, etcd.endpoint) as registrar, \
            EtcdConnection(EtcdConfig(etcd.endpoint)) as other:
        old = registrar.lease_id
        other.revoke(old)  # the record goes with its lease
        assert wait_until(lambda: registered(registrar, etcd.endpoint)
                          and registrar.lease_id != old, HEARTBEAT + MAX_BACKOFF + 1)
        assert other.lease_ttl(registrar.lease_id) > 0  # put under a lease that lives
        assert other.lease_ttl(old) <= 0


@pytest.mark.timeout(30)
def test_a_deleted_key_is_put_back_at_once(etcd, domain):
    with new_registrar(domain, etcd.endpoint) as registrar, \
            EtcdConnection(EtcdConfig(etcd.endpoint)) as other:
        before = registrar.registrations
        other.delete(registrar.key)
        started = time.monotonic()
        # the registrar's watch on its key sees the delete (its first step, one heartbeat
        # after start, creates it); the lease is kept alive, so without the watch the record
        # never comes back.  2.5 s of slack (was 1) for a loaded machine's scheduler thread.
        assert wait_until(lambda: registered(registrar, etcd.endpoint), HEARTBEAT + 2.5)
        assert registrar.registrations > before
        assert time.monotonic() - started < HEARTBEAT + 2.5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("wipe", [False, True], ids=["same-data", "empty-data"])
def test_registration_survives_an_etcd_restart(etcd_factory, domain, wipe):
    server = etcd_factory()
    with new_registrar(domain, server.endpoint) as registrar:
        server.restart(wipe=wipe)
        back = time.monotonic()
        assert wait_until(lambda: registered(registrar, server.endpoint),
                          MAX_BACKOFF + HEARTBEAT + 1)
        # and it stays registered: the lease really is kept alive afterwards
        time.sleep(TTL + 1)
        assert registered(registrar, server.endpoint)
        assert time.monotonic() - back >= TTL


@pytest.mark.timeout(60)
def test_registration_comes_back_within_max_backoff_after_a_long_outage(etcd_factory, domain):
    """etcd away for 5 TTLs (long enough for the backoff to reach its cap): the record is back
    within max_backoff (+ one heartbeat and slack) of etcd answering again."""
    server = etcd_factory()
    with new_registrar(domain, server.endpoint) as registrar:
        server.stop()
        time.sleep(5 * TTL)
        assert not registrar.registered
        server.start()
        answered = time.monotonic()
        assert wait_until(lambda: registered(registrar, server.endpoint),
                          MAX_BACKOFF + HEARTBEAT + 1.5)
        took = time.monotonic() - answered
        assert wait_until(lambda: registrar.registered, 2)
    print("record back %.2f s after etcd answered again" % took)


@pytest.mark.timeout(60)
def test_a_paused_server_registers_again(etcd, domain):
    """SIGSTOP a server longer than its TTL: its record expires, and comes back on SIGCONT."""
    with Fleet(domain, etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT) as fleet:
        server, = fleet.start(1)
        discovery = Discovery(domain, etcd=etcd.endpoint, check_interval=CHECK).start()
        try:
            assert discovery.wait_for(lambda v: len(v) == 1, 5)
            server.pause()
            # expiry <= ttl after the last keepalive, etcd revokes every 0.5 s, then the watch
            assert discovery.wait_for(lambda v: len(v) == 0, TTL + 3)
            server.resume()
            assert discovery.wait_for(lambda v: [s.url for s in v] == [server.url],
                                      MAX_BACKOFF + HEARTBEAT + 2)
        finally:
            discovery.close()


def test_bad_registrar_settings_are_refused(etcd, domain):
    info = ServerInfo(domain, "tcp://127.0.0.1:9")
    with pytest.raises(ConfigError, match="ttl"):
        Registrar(info, etcd=etcd.endpoint, ttl=0)
    with pytest.raises(ConfigError, match="heartbeat"):
        Registrar(info, etcd=etcd.endpoint, ttl=2, heartbeat=2)

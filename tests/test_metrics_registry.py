"""Discovery and registrar metrics against real etcd servers: registrations, a deleted record,
an etcd SIGKILLed and restarted empty, each counter checked against an independent witness
(the object's own counters, or one log line per event)."""

from __future__ import annotations

import logging
from typing import Any

from hprose_cluster import Discovery, Registrar, ServerInfo
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConnection, EtcdConfig

from tests.support.cluster_procs import wait_until
from tests.support.metrics import present, registry, value  # noqa: F401

SERVERS = "hprose_cluster_discovery_servers"
RESYNCS = "hprose_cluster_discovery_resyncs_total"
BREAKS = "hprose_cluster_discovery_watch_breaks_total"
AGE = "hprose_cluster_discovery_last_event_age_seconds"
REGISTERED = "hprose_cluster_registrar_registered"
REGISTRATIONS = "hprose_cluster_registrar_registrations_total"
FAILURES = "hprose_cluster_registrar_refresh_failures_total"


def _info(domain: str) -> ServerInfo:
    return ServerInfo(domain, "tcp4://127.0.0.1:%d" % free_port())


def test_servers_gauge_follows_the_view(registry: Any, etcd: Any, domain: str) -> None:
    registrars = [Registrar(_info(domain), etcd=etcd.endpoint, ttl=5, heartbeat=1).start()
                  for _ in range(3)]
    try:
        with Discovery(domain, etcd=etcd.endpoint) as discovery:
            assert wait_until(lambda: value(registry, SERVERS, domain=domain) == 3, 10)
            registrars.pop().close()
            assert wait_until(lambda: value(registry, SERVERS, domain=domain) == 2, 10)
            assert len(discovery.servers()) == 2
            assert 0 <= value(registry, AGE, domain=domain) < discovery.check_interval + 5
            assert value(registry, RESYNCS, domain=domain) == discovery.resyncs == 0
            assert value(registry, BREAKS, domain=domain) == 0
        # the last discovery of the domain closed: its gauges go
        assert not present(registry, SERVERS, domain=domain)
        assert not present(registry, AGE, domain=domain)
    finally:
        for registrar in registrars:
            registrar.close()


def test_every_domain_discovery_is_labelled_star(registry: Any, etcd: Any, domain: str) -> None:
    with Registrar(_info(domain), etcd=etcd.endpoint, ttl=5, heartbeat=1), \
            Discovery(None, etcd=etcd.endpoint) as discovery:
        assert wait_until(lambda: any(s.domain == domain for s in discovery.servers()), 10)
        assert value(registry, SERVERS, domain="*") == len(discovery.servers()) >= 1


def test_registrations_and_registered(registry: Any, etcd: Any, domain: str) -> None:
    info = _info(domain)
    registrar = Registrar(info, etcd=etcd.endpoint, ttl=3, heartbeat=0.3).start()
    try:
        assert value(registry, REGISTRATIONS, domain=domain) == 1
        assert value(registry, REGISTERED, domain=domain, uuid=info.uuid) == 1
        with EtcdConnection(EtcdConfig.coerce(etcd.endpoint)) as connection:
            connection.delete(registrar.key)  # someone deletes the record: it comes back
        assert wait_until(lambda: value(registry, REGISTRATIONS, domain=domain) == 2, 10)
        assert registrar.registrations == 2
        assert value(registry, REGISTERED, domain=domain, uuid=info.uuid) == 1
        assert value(registry, FAILURES, domain=domain) == 0
    finally:
        registrar.close()
    # closed: the lease is revoked and its series goes
    assert not present(registry, REGISTERED, domain=domain, uuid=info.uuid)
    assert value(registry, REGISTRATIONS, domain=domain) == 2


def test_etcd_killed_and_restarted_empty(registry: Any, etcd_factory: Any, domain: str,
                                         caplog: Any) -> None:
    """etcd SIGKILLed, then back with an empty data dir (a new cluster): the registrar counts
    each failed heartbeat (one log line each) and registers once more; the discovery counts
    each watch break (one log line each) and the full re-read of the new cluster; the age of
    its last confirmation grows during the outage and falls back after."""
    caplog.set_level(logging.DEBUG, logger="hprose_cluster.registrar")
    caplog.set_level(logging.DEBUG, logger="hprose_cluster.discovery")
    server = etcd_factory()
    info = _info(domain)
    registrar = Registrar(info, etcd=server.endpoint, ttl=2, heartbeat=0.5, max_backoff=0.5)
    discovery = Discovery(domain, etcd=server.endpoint, check_interval=0.5, max_backoff=0.5)
    with registrar.start(), discovery.start():
        assert discovery.wait_for_servers(10)
        assert value(registry, REGISTERED, domain=domain, uuid=info.uuid) == 1
        server.kill()
        # no refresh for a whole TTL: not registered any more; the view is not confirmed
        assert wait_until(lambda: value(registry, REGISTERED, domain=domain, uuid=info.uuid) == 0,
                          20)
        assert wait_until(lambda: value(registry, AGE, domain=domain) > 2.0, 20)
        assert value(registry, SERVERS, domain=domain) == 1  # the last known view is kept
        server.restart(wipe=True)
        assert wait_until(lambda: value(registry, REGISTERED, domain=domain, uuid=info.uuid) == 1,
                          30)
        assert wait_until(lambda: discovery.resyncs >= 1 and len(discovery.servers()) == 1
                          and value(registry, AGE, domain=domain) < 2.0, 30)

        def records(logger: str, *texts: str) -> int:
            return sum(1 for r in caplog.records
                       if r.name == logger and any(t in r.getMessage() for t in texts))

        assert value(registry, RESYNCS, domain=domain) == discovery.resyncs
        breaks = records("hprose_cluster.discovery", "broke (")
        assert breaks >= 1
        assert value(registry, BREAKS, domain=domain) == breaks
        assert registrar.registrations >= 2
        assert value(registry, REGISTRATIONS, domain=domain) == registrar.registrations
        failures = records("hprose_cluster.registrar", "(retrying in", "expired; registering again")
        assert failures >= 1
        assert value(registry, FAILURES, domain=domain) == failures

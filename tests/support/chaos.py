"""What the chaos tests share: their settings, the convergence bound, a client and a fleet of
hello server processes with those settings, and a load of 8 threads calling through the client.

Settings: ttl=2, heartbeat=0.5 (servers), check_interval=0.5 (clients), max_backoff=3 (both).
The convergence bound used for views and registrations is
``BOUND = ttl + max_backoff + check_interval + slack`` (2 + 3 + 0.5 + 2.5 = 8 s): a lease expires
within ttl, the registrar is back within max_backoff of etcd answering, and a client view that
missed anything is repaired within check_interval.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import pytest

from hprose_cluster import ClusterClient
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.record import ServerInfo

from tests.support.cluster_procs import Fleet, Load, wait_until

TTL = 2
HEARTBEAT = 0.5
CHECK = 0.5
MAX_BACKOFF = 3.0
BOUND = TTL + MAX_BACKOFF + CHECK + 2.5


def etcd_urls(endpoints: str, domain: str) -> set[str]:
    """The server URLs etcd holds for ``domain`` right now (a fresh connection each time)."""
    with EtcdConnection(EtcdConfig(endpoints, timeout=2.0)) as connection:
        response = connection.get_prefix("hprose-service/%s/" % domain)
        return {ServerInfo.from_json(kv.value, kv.key).url for kv in response.kvs}


def client_urls(client: ClusterClient) -> set[str]:
    return {s.url for s in client.servers()}


def make_client(domain: str, endpoints: str, **options: Any) -> ClusterClient:
    # timeout=5 (as the asyncio chaos tests): a call may wait FailoverPolicy.wait_for_server
    # (3 s) for the domain to fill again, but only within its timeout.  With 2 s, a domain
    # emptied by etcd expiring every lease (paused past the TTL) had to be back within 2 s,
    # while the registrars' bound is max_backoff + heartbeat (3.5 s): calls failed although
    # every process did what it promises.
    options.setdefault("idempotent", True)
    options.setdefault("timeout", 5.0)
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

"""``timeout`` is one deadline for the whole ClusterClient call: waiting for a server, every
attempt and every backoff; each attempt gets what remains.  Real etcd, real TCP servers that
hang (their function waits until the test ends)."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from hprose_cluster import ClusterClient, ClusterTcpServer, Registrar, ServerInfo
from hprose_cluster.embedded import free_port
from hprose_cluster.errors import CallTimeout, ConfigError, NoServerAvailable
from hprose_cluster.failover import FailoverPolicy

pytestmark = pytest.mark.timeout(60)

# A call with timeout=1 must end at that one deadline: under 1.2 s on a quiet machine, but
# 1.46 s was seen beside other test runs on 2 busy cores (scheduling, not the client), so a
# 0.5 s slack left nothing for a more loaded machine (load 4-10, stolen CPU).  A timeout per
# attempt over three hung servers takes 3 s, so 1 s of slack (2 s) still fails that, and the
# waits they are measured against (wait_for_server=10, backoff=5) are longer still.
LATE = 1.0


class Hung:
    """Three registered servers whose ``work`` never answers before the test ends."""

    def __init__(self, domain: str, endpoint: str, count: int = 3):
        self.release = threading.Event()
        self.servers = []
        for _ in range(count):
            server = ClusterTcpServer(domain, etcd=endpoint, ttl=5, heartbeat=1, drain_delay=0)
            server.addFunction(lambda x: self.release.wait(30) and x, "work")
            server.start(block=False)
            self.servers.append(server)

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.stop(drain_timeout=1)


@pytest.fixture
def hung(etcd, domain) -> Iterator[Hung]:
    servers = Hung(domain, etcd.endpoint)
    try:
        yield servers
    finally:
        servers.close()


def _client(domain: str, endpoint: str, **options) -> ClusterClient:  # type: ignore[no-untyped-def]
    client = ClusterClient(domain, etcd=endpoint, check_interval=0.5, **options)
    assert client.discovery.wait_for_servers(5, count=3)
    return client


def test_one_second_over_three_hung_servers_is_one_second(etcd, domain, hung) -> None:
    with _client(domain, etcd.endpoint, timeout=1, idempotent=True) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout) as caught:
            client.work(1)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + LATE, elapsed
    message = str(caught.value)
    # the first attempt had all the time; the message names it and the servers left untried
    assert "attempt 1 on " in message and "2 more server(s) not tried" in message, message
    assert sum(url in message for url in hung.urls) == 1, message
    assert domain in message and caught.value.sent is True


def test_attempt_timeout_shares_the_deadline_and_every_attempt_is_named(etcd, domain,
                                                                         hung) -> None:
    policy = FailoverPolicy(idempotent=True, attempt_timeout=0.3, eject_after=0)
    with _client(domain, etcd.endpoint, timeout=1, failover=policy) as client:
        started = time.monotonic()
        with pytest.raises((CallTimeout, NoServerAvailable)) as caught:
            client.work(1)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + LATE, elapsed
    message = str(caught.value)
    for n, url in enumerate(hung.urls, 1):
        assert url in message, message
        assert "attempt %d on " % n in message, message


def test_a_call_that_may_not_be_retried_also_ends_at_its_deadline(etcd, domain, hung) -> None:
    with _client(domain, etcd.endpoint, timeout=1) as client:
        started = time.monotonic()
        with pytest.raises(CallTimeout) as caught:
            client.work(1)
        assert time.monotonic() - started < 1.0 + LATE
    assert caught.value.url in hung.urls


def test_waiting_for_a_server_counts_against_the_deadline(etcd, domain) -> None:
    policy = FailoverPolicy(wait_for_server=10)
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=0.5, failover=policy) as client:
        started = time.monotonic()
        with pytest.raises(NoServerAvailable):
            client.work(1)
        assert time.monotonic() - started < 0.5 + LATE


def _dead_url() -> str:
    return "tcp://127.0.0.1:%d" % free_port()


def test_backoff_between_attempts_counts_against_the_deadline(etcd, domain) -> None:
    dead = [Registrar(ServerInfo(domain, _dead_url()), etcd=etcd.endpoint, ttl=5).start()
            for _ in range(3)]
    try:
        policy = FailoverPolicy(backoff=5, backoff_max=5, wait_for_server=0)
        with ClusterClient(domain, etcd=etcd.endpoint, timeout=1, failover=policy) as client:
            assert client.discovery.wait_for_servers(5, count=3)
            started = time.monotonic()
            with pytest.raises((CallTimeout, NoServerAvailable)) as caught:
                client.work(1)
            assert time.monotonic() - started < 1.0 + LATE
            assert caught.value.__cause__ is not None or "refused" in str(caught.value)
    finally:
        for registrar in dead:
            registrar.close()


def test_bad_attempt_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="attempt_timeout"):
        FailoverPolicy(attempt_timeout=0)

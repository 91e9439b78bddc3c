"""No call fails because the view changed while its server was alive, for calls that may not
be retried too.  Real etcd, real servers: a record deleted and put back, etcd paused past
the TTL again and again under load.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from hprose_cluster import ClusterClient, ClusterHttpServer, ClusterTcpServer
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.record import ServerInfo

from tests.support.cluster_procs import Fleet, Load, wait_until

TTL = 2
HEARTBEAT = 0.5
CHECK = 0.5


@pytest.fixture(params=["tcp-half", "tcp-full", "http"])
def slow_server(request: pytest.FixtureRequest, etcd: Any, domain: str) -> Iterator[Any]:
    cls = ClusterHttpServer if request.param == "http" else ClusterTcpServer
    server = cls(domain, etcd=etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT, drain_delay=0)
    server.addFunction(lambda seconds: time.sleep(seconds) or seconds, "slow")
    server.start(block=False)
    server.full_duplex = request.param == "tcp-full"
    try:
        yield server
    finally:
        server.stop(drain_timeout=2)


def test_a_call_in_flight_survives_its_server_leaving_and_coming_back(etcd, domain,
                                                                       slow_server) -> None:
    """The record is deleted (the server leaves the view: its transport is retired) and put
    back by the registrar (a second change, which used to close the retired transport under
    the call: EBADF or EOF).  The call, which may not be retried, must still succeed."""
    with ClusterClient(domain, etcd=etcd.endpoint, idempotent=False, timeout=10,
                       full_duplex=slow_server.full_duplex, check_interval=CHECK) as client, \
            EtcdConnection(EtcdConfig(etcd.endpoint)) as other:
        assert client.discovery.wait_for_servers(5)
        assert client.slow(0) == 0  # a connection is open and pooled
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(client.slow(1.5))
            except Exception as error:  # the test reports it
                outcome.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        assert wait_until(lambda: slow_server.in_flight == 1, 5)
        for _ in range(2):  # leave and come back, twice: retire, then the changes after it
            other.delete(slow_server.registrar.key)
            assert client.discovery.wait_for(lambda v: len(v) == 0, 5)
            assert client.discovery.wait_for(lambda v: len(v) == 1, HEARTBEAT + 5)
        caller.join(10)
        assert outcome == [1.5]
        # the retired transport's connection closed when its call ended; new calls work
        assert client.slow(0) == 0


class _LeaveAfterFailing:
    """Picks the dead server first; when the call fails on it, waits (inside ``failed()``,
    before the call's next pick) until that server has left the client's view, while a live
    one registers a moment later."""

    def __init__(self, client_box: list[ClusterClient], dead_url: str, then: Any):
        self.client_box = client_box
        self.dead_url = dead_url
        self.then = then

    def pick(self, view: Any, exclude: Any, ejector: Any) -> ServerInfo | None:
        servers = sorted(view.servers, key=lambda s: s.url != self.dead_url)
        return next((s for s in servers if s.uuid not in exclude), None)

    def failed(self, server: ServerInfo) -> None:
        if server.url == self.dead_url:
            self.then()
            discovery = self.client_box[0].discovery
            assert discovery.wait_for(lambda v: all(s.url != self.dead_url
                                                    for s in v.servers), 5)


def test_a_refused_call_whose_server_left_waits_for_the_next_server(etcd, domain) -> None:
    """Not sent anywhere, no untried server left, and the view is moving: the call waits for
    a server (within its deadline), as a call that finds the view empty does."""
    from hprose_cluster import Registrar
    from hprose_cluster.embedded import free_port

    dead = Registrar(ServerInfo(domain, "tcp4://127.0.0.1:%d" % free_port()),
                     etcd=etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT).start()
    live = ClusterTcpServer(domain, etcd=etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT)
    live.addFunction(lambda: "live", "who")

    def leave_and_replace() -> None:
        dead.close()
        threading.Timer(0.3, lambda: live.start(block=False)).start()

    box: list[ClusterClient] = []
    selector = _LeaveAfterFailing(box, dead.info.url, leave_and_replace)
    try:
        with ClusterClient(domain, etcd=etcd.endpoint, idempotent=False, timeout=5,
                           selector=selector, check_interval=CHECK) as client:
            box.append(client)
            assert client.discovery.wait_for_servers(5)
            assert client.who() == "live"
    finally:
        dead.close()
        live.stop(drain_timeout=1)


# ------------------------------------------------------------------ etcd paused past the TTL


def _etcd_urls(endpoint: str, domain: str) -> set[str]:
    with EtcdConnection(EtcdConfig(endpoint, timeout=2.0)) as connection:
        response = connection.get_prefix("hprose-service/%s/" % domain)
        return {ServerInfo.from_json(kv.value, kv.key).url for kv in response.kvs}


def _converged(client: ClusterClient, endpoint: str, domain: str, urls: set[str]) -> bool:
    try:
        return _etcd_urls(endpoint, domain) == urls and \
            {s.url for s in client.servers()} == urls
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_etcd_paused_past_the_ttl_repeatedly_costs_no_call_that_may_not_be_retried(
        etcd_factory, domain, transport) -> None:
    etcd = etcd_factory()
    fleet = Fleet(domain, etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT, transport=transport)
    try:
        fleet.start(3)
        with ClusterClient(domain, etcd=etcd.endpoint, idempotent=False, timeout=10,
                           check_interval=CHECK) as client:
            assert client.discovery.wait_for_servers(10, count=3)
            with Load(lambda: client.hello("paused"), threads=8, max_calls=100000,
                      max_seconds=150) as load:
                assert load.wait_calls(200)
                for _ in range(3):
                    etcd.pause()
                    time.sleep(TTL + 1.5)
                    etcd.resume()
                    assert wait_until(lambda: _converged(client, etcd.endpoint, domain,
                                                         fleet.urls()), 15)
                    assert load.wait_calls(200, timeout=20)
            assert load.ok > 600
            assert not load.failures, load.describe_failures()
    finally:
        fleet.close()

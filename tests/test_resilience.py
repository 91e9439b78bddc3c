"""Registration, discovery and failover rules, each tested against real etcd servers and real
sockets: leases revoked, keys deleted, etcd restarted (same data, empty data), etcd away for a
while, servers crashed or killed mid-call, and drained servers.

Short settings: ttl=2, heartbeat=0.5, check_interval=0.5, max_backoff=3.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Collection

import pytest
from hprose.common import HproseException

from hprose_cluster import ClusterClient, ClusterTcpServer, Discovery, Registrar, ServerInfo
from hprose_cluster.errors import CallTimeout, ConfigError, NoServerAvailable, TransportError
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.failover import FailoverPolicy
from hprose_cluster.transport.tcp import TcpServer

from tests.support.cluster_procs import Fleet, wait_until

TTL = 2
HEARTBEAT = 0.5
MAX_BACKOFF = 3.0
CHECK = 0.5


def record_value(endpoint: str, key: str) -> bytes | None:
    with EtcdConnection(EtcdConfig(endpoint, timeout=2.0)) as connection:
        response = connection.get(key)
        return response.kvs[0].value if response.kvs else None


def registered(registrar: Registrar, endpoint: str) -> bool:
    try:
        return record_value(endpoint, registrar.key) == registrar.info.to_json()
    except Exception:
        return False


def new_registrar(domain: str, endpoint: str, url: str = "tcp://127.0.0.1:9") -> Registrar:
    return Registrar(ServerInfo(domain, url), etcd=endpoint, ttl=TTL, heartbeat=HEARTBEAT,
                     max_backoff=MAX_BACKOFF)


def _try(func: Any, *args: Any) -> bool:
    try:
        func(*args)
        return True
    except Exception:
        return False


# =========================================================================== registration


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
        assert wait_until(lambda: registered(registrar, etcd.endpoint), HEARTBEAT + 1)
        assert registrar.registrations > before
        assert time.monotonic() - started < HEARTBEAT + 1


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
            assert discovery.wait_for(lambda v: len(v) == 0, TTL + 2)
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


# =========================================================================== discovery


@pytest.mark.timeout(60)
def test_a_replaced_cluster_is_diffed_and_listeners_see_only_real_changes(etcd_factory, domain):
    server = etcd_factory()
    infos = {name: ServerInfo(domain, "tcp://127.0.0.1:%d" % port)
             for name, port in (("a", 1001), ("b", 1002), ("c", 1003), ("d", 1004))}
    prefix = "hprose-service"

    def put(connection: EtcdConnection, *names: str) -> None:
        for name in names:
            connection.put(infos[name].key(prefix), infos[name].to_json())

    with EtcdConnection(EtcdConfig(server.endpoint)) as writer:
        put(writer, "a", "b", "c")
    changes: list[tuple[str, str]] = []
    with Discovery(domain, etcd=server.endpoint, check_interval=CHECK) as discovery:
        discovery.add_listener(lambda added, removed: changes.extend(
            [("+", s.url) for s in added] + [("-", s.url) for s in removed]))
        assert len(discovery.servers()) == 3
        server.stop()
        time.sleep(3 * CHECK)
        assert len(discovery.servers()) == 3  # the last known list is kept while etcd is away
        server.restart(wipe=True)  # a new cluster id, revisions start again from 1
        with EtcdConnection(EtcdConfig(server.endpoint)) as writer:
            # gRPC shares connections between channels in a process: this new one may see the
            # old one's reconnect backoff (at most 1 s) before it reaches the new etcd
            assert wait_until(lambda: _try(put, writer, "b", "c", "d"), 3)
        assert discovery.wait_for(
            lambda v: {s.url for s in v} == {infos[n].url for n in "bcd"}, MAX_BACKOFF + 5)
        time.sleep(2 * CHECK)
    assert sorted(changes) == [("+", infos["d"].url), ("-", infos["a"].url)]


@pytest.mark.timeout(60)
def test_discovery_follows_changes_after_etcd_restarts_on_its_data(etcd_factory, domain):
    server = etcd_factory()
    with Discovery(domain, etcd=server.endpoint, check_interval=CHECK) as discovery, \
            new_registrar(domain, server.endpoint, "tcp://127.0.0.1:2001"):
        assert discovery.wait_for_servers(5)
        server.kill()
        server.start()
        with new_registrar(domain, server.endpoint, "tcp://127.0.0.1:2002"):
            assert discovery.wait_for(lambda v: len(v) == 2, 5)
        assert discovery.wait_for(lambda v: [s.url for s in v] == ["tcp://127.0.0.1:2001"], 5)


# =========================================================================== failover rules


class Ordered:
    """A selector that tries servers in a fixed URL order (so a test knows who goes first)."""

    def __init__(self, *urls: str):
        self.urls = urls

    def pick(self, view: Any, exclude: Collection[str], ejector: Any) -> ServerInfo | None:
        by_url = {s.url: s for s in view.servers}
        for url in self.urls:
            server = by_url.get(url)
            if server is not None and server.uuid not in exclude:
                return server
        return None

    def failed(self, server: ServerInfo) -> None:
        pass


class Counting:
    """An in-process ClusterTcpServer whose functions count their executions."""

    def __init__(self, domain: str, endpoint: str, *, delay: float = 0.0, port: int = 0):
        self.calls = 0
        self.lock = threading.Lock()
        self.server = ClusterTcpServer(domain, port=port, etcd=endpoint, ttl=TTL,
                                       heartbeat=HEARTBEAT, drain_delay=0.2)

        def work(x: Any) -> Any:
            with self.lock:
                self.calls += 1
            time.sleep(delay)
            return x

        def fail() -> None:
            with self.lock:
                self.calls += 1
            raise Exception("business error")

        self.server.addFunction(work, "work")
        self.server.addFunction(fail, "fail")
        self.server.start(block=False)

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.stop(drain_timeout=1)


@pytest.fixture
def counting(etcd, domain):
    made: list[Counting] = []

    def make(**options: Any) -> Counting:
        made.append(Counting(domain, etcd.endpoint, **options))
        return made[-1]

    yield make
    for server in made:
        server.close()


def dead_url() -> str:
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return "tcp://127.0.0.1:%d" % port


@pytest.mark.timeout(30)
def test_a_refused_connection_is_retried_elsewhere_even_when_not_idempotent(etcd, domain, counting):
    live = counting()
    dead = dead_url()
    with new_registrar(domain, etcd.endpoint, dead), \
            ClusterClient(domain, etcd=etcd.endpoint, selector=Ordered(dead, live.url),
                          idempotent=False, check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        assert client.work(7) == 7
        assert live.calls == 1
        assert client.ejector.is_ejected(dead)  # refused: ejected at once


@pytest.mark.timeout(30)
def test_a_timeout_after_send_is_retried_only_when_idempotent(etcd, domain, counting):
    slow, fast = counting(delay=1.5), counting()
    # timeout is the whole call's; attempt_timeout lets a hung first server leave time for
    # the second (a timeout of 0.5 alone would be spent on the first attempt)
    with ClusterClient(domain, etcd=etcd.endpoint, selector=Ordered(slow.url, fast.url),
                       timeout=3, check_interval=CHECK,
                       failover=FailoverPolicy(eject_after=0, attempt_timeout=0.5)) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        with pytest.raises(CallTimeout):
            client.work(1)
        assert (slow.calls, fast.calls) == (1, 0)
        assert client.work(2, idempotent=True) == 2  # per call
        assert (slow.calls, fast.calls) == (2, 1)
        assert client.invoke("work", [3], idempotent=True) == 3
        assert (slow.calls, fast.calls) == (3, 2)
    with ClusterClient(domain, etcd=etcd.endpoint, selector=Ordered(slow.url, fast.url),
                       timeout=3, idempotent=True, check_interval=CHECK,
                       failover=FailoverPolicy(attempt_timeout=0.5)) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        assert client.work(4) == 4  # per client
        assert (slow.calls, fast.calls) == (4, 3)
        with pytest.raises(CallTimeout):
            client.work(5, idempotent=False)  # the call's word beats the client's


@pytest.mark.timeout(60)
def test_a_server_killed_mid_call_is_retried_only_when_idempotent(etcd, domain):
    with Fleet(domain, etcd.endpoint, ttl=TTL, heartbeat=HEARTBEAT) as fleet:
        first, second = fleet.start(2)
        for idempotent, expect_ok in ((False, False), (True, True)):
            victim = first if first.running else second
            other = second if victim is first else first
            with ClusterClient(domain, etcd=etcd.endpoint, timeout=10, check_interval=CHECK,
                               selector=Ordered(victim.url, other.url)) as client:
                assert client.discovery.wait_for(
                    lambda v: {victim.url, other.url} <= {s.url for s in v}, 5)
                killer = threading.Timer(0.5, victim.kill)
                killer.start()
                started = time.monotonic()
                if expect_ok:
                    assert client.sleep(1, idempotent=idempotent) == 1
                else:
                    with pytest.raises(TransportError) as caught:
                        client.sleep(1, idempotent=idempotent)
                    assert caught.value.sent
                killer.join()
                assert time.monotonic() - started < 5
            if not expect_ok:
                fleet.start(1)
                first, second = fleet.live[0], fleet.live[1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("rotate", [True, False])
def test_business_errors_are_never_retried(etcd, domain, counting, rotate):
    servers = [counting(), counting()]
    policy = FailoverPolicy(rotate_on_error=rotate, idempotent=True)
    with ClusterClient(domain, etcd=etcd.endpoint, failover=policy,
                       check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        client.work(0)
        primary = client.primary
        with pytest.raises(HproseException, match="business error"):
            client.fail()
        assert sum(s.calls for s in servers) == 2  # one work, one fail: no retry
        if rotate:
            assert client.primary is None  # the next call picks afresh
        else:
            assert client.primary == primary


@pytest.mark.timeout(30)
def test_a_call_never_tries_a_server_twice(etcd, domain, counting):
    servers = [counting(delay=1.0), counting(delay=1.0)]
    policy = FailoverPolicy(max_attempts=5, idempotent=True, wait_for_server=0, eject_after=0,
                            attempt_timeout=0.3)  # timeout is the whole call's
    with ClusterClient(domain, etcd=etcd.endpoint, failover=policy, timeout=3,
                       check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        with pytest.raises(NoServerAvailable) as caught:
            client.work(1)
    assert [s.calls for s in servers] == [1, 1]
    assert all(s.url in str(caught.value) for s in servers)


@pytest.mark.timeout(40)
def test_a_crashed_but_listed_server_is_ejected_then_tried_again_after_the_cool_down(
        etcd, domain, counting):
    live = counting()
    down = dead_url()
    port = int(down.rsplit(":", 1)[1])
    policy = FailoverPolicy(eject_for=1.0)
    with new_registrar(domain, etcd.endpoint, down), \
            ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin", failover=policy,
                          check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        for i in range(20):  # no call fails, and the listed-but-dead server is skipped
            assert client.work(i) == i
        assert client.ejector.is_ejected(down)
        assert live.calls == 20
        revived = TcpServer("127.0.0.1", port)
        revived_calls = []
        revived.addFunction(lambda x: revived_calls.append(x) or x, "work")
        revived.start(block=False)
        try:
            time.sleep(1.2)  # the cool-down
            for i in range(20):
                assert client.work(i) == i
            assert revived_calls  # back in rotation
        finally:
            revived.stop(drain_timeout=1)


def test_bad_failover_settings_are_refused():
    with pytest.raises(ConfigError, match="max_attempts"):
        FailoverPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="wait_for_server"):
        FailoverPolicy(wait_for_server=-1)


@pytest.mark.timeout(30)
def test_a_call_waits_for_a_server_to_appear(etcd, domain, counting):
    with ClusterClient(domain, etcd=etcd.endpoint, check_interval=CHECK,
                       failover=FailoverPolicy(wait_for_server=5)) as client:
        threading.Timer(0.5, counting).start()
        started = time.monotonic()
        assert client.work(1) == 1
        assert 0.4 < time.monotonic() - started < 5
    with ClusterClient(domain + "x", etcd=etcd.endpoint, check_interval=CHECK,
                       failover=FailoverPolicy(wait_for_server=0.3)) as client:
        with pytest.raises(NoServerAvailable, match=domain + "x"):
            client.work(1)


# =========================================================================== drain


@pytest.mark.timeout(30)
def test_drain_leaves_the_registry_first_and_finishes_calls_in_flight(etcd, domain, counting):
    slow = counting(delay=1.0)
    with ClusterClient(domain, etcd=etcd.endpoint, check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5)
        result: list[Any] = []
        caller = threading.Thread(target=lambda: result.append(client.work("x")))
        caller.start()
        assert wait_until(lambda: slow.server.in_flight == 1, 2)
        drainer = threading.Thread(target=slow.server.drain)
        drainer.start()
        assert client.discovery.wait_for(lambda v: len(v) == 0, 1.0)  # gone while still busy
        assert caller.is_alive()
        caller.join(5)
        drainer.join(5)
        assert result == ["x"]

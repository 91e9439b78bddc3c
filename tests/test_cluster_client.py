"""ClusterClient against real servers registered in a real etcd."""

from __future__ import annotations

import threading
import time

import pytest
from hprose.common import HproseException

from hprose_cluster import ClusterClient, ConfigError, NoServerAvailable

from tests.support.cluster_procs import ServerProc
from tests.support.threads import run_in_threads


def _whoami_url(client) -> str:
    return client.whoami().split(" ")[0]


def test_calls_like_an_hprose_client(etcd, domain, hello_servers):
    hello_servers(domain, "tcp")
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        assert client.hello("world") == "Hello world"
        assert client.sum(1, 2) == 3
        assert client.invoke("hello", ["x"]) == "Hello x"
        proxy = client.useService()
        assert proxy.Hello("go") == "Hello go"  # names match case-insensitively
        with pytest.raises(HproseException, match="boom"):
            client.fail()


def test_async_callback_and_onerror(etcd, domain, hello_servers):
    hello_servers(domain, "http")
    results, errors, done = [], [], threading.Event()
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.hello("cb", callback=lambda result: results.append(result))
        client.onError = lambda name, error: (errors.append((name, str(error))), done.set())
        client.fail(callback=lambda: results.append("never"))
        assert done.wait(5)
        deadline = time.monotonic() + 5
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
    assert results == ["Hello cb"]
    assert errors == [("fail", "boom")]


def test_filters_see_request_and_reply(etcd, domain, hello_servers):
    hello_servers(domain, "tcp")
    seen = []

    class Recorder:
        def outputFilter(self, data, context):  # noqa: N802 - hprose's name
            seen.append(("out", data))
            return data

        def inputFilter(self, data, context):  # noqa: N802
            seen.append(("in", data))
            return data

    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.addFilter(Recorder())
        assert client.hello("world") == "Hello world"
    assert seen == [("out", b'Cs5"hello"a1{s5"world"}z'), ("in", b'Rs11"Hello world"z')]


def test_business_error_rotates_the_primary(etcd, domain, hello_servers):
    for _ in range(3):
        hello_servers(domain, "tcp")
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.discovery.wait_for_servers(2, count=3)
        first = _whoami_url(client)
        assert _whoami_url(client) == first, "the primary should stay until a call fails"
        with pytest.raises(HproseException):
            client.fail()
        assert _whoami_url(client) != first


def test_primary_that_leaves_is_replaced_at_once(etcd, domain, hello_servers):
    # ttl=10: gone through the watch (bound 3 s on a loaded machine), not the lease running out
    servers = [hello_servers(domain, "tcp", ttl=10) for _ in range(2)]
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.discovery.wait_for_servers(2, count=2)
        first = _whoami_url(client)
        primary = next(s for s in servers if s.url == first)
        primary.stop()
        assert client.discovery.wait_for(lambda v: primary.uuid not in v, timeout=3)
        assert _whoami_url(client) != first


def test_new_server_is_noticed(etcd, domain, hello_servers):
    hello_servers(domain, "tcp")
    with ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin") as client:
        late = hello_servers(domain, "http")
        # through the watch: well before the periodic check (5 s)
        assert client.discovery.wait_for(lambda v: late.uuid in v, timeout=3)
        answered = {_whoami_url(client) for _ in range(4)}
        assert late.url in answered and len(answered) == 2


def test_mixed_http_and_tcp_domain(etcd, domain, hello_servers):
    urls = {hello_servers(domain, "http").url, hello_servers(domain, "tcp").url}
    with ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin") as client:
        client.discovery.wait_for_servers(2, count=2)
        assert {_whoami_url(client) for _ in range(6)} == urls
        assert any(u.startswith("http://") for u in urls) and any(u.startswith("tcp4://") for u in urls)


def test_dead_primary_is_skipped_transparently(etcd, domain, hello_servers):
    """A SIGKILLed primary stays listed until its TTL runs out; calls (not marked idempotent)
    must still succeed because the connection to it cannot even be opened."""
    hello_servers(domain, "tcp")
    with ServerProc(domain, etcd.endpoint, ttl=5, heartbeat=1).start() as doomed, \
            ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.discovery.wait_for_servers(2, count=2)
        for _ in range(20):  # make the subprocess the primary
            if _whoami_url(client) == doomed.url:
                break
            client.selector.failed(client.primary)
        assert client.primary.url == doomed.url
        doomed.kill()
        assert any(s.url == doomed.url for s in client.servers()), "still listed (TTL)"
        for i in range(20):
            assert client.sum(i, 1) == i + 1
        assert client.primary.url != doomed.url


def test_eight_threads_share_one_client(etcd, domain, hello_servers):
    for transport in ("tcp", "http"):
        hello_servers(domain, transport)
    with ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin") as client:
        client.discovery.wait_for_servers(2, count=2)

        def work(n: int) -> None:
            for i in range(50):
                assert client.sum(n, i) == n + i
                assert client.hello(str(n)) == "Hello %d" % n

        failures = run_in_threads(work, 8, timeout=60)
    assert not failures


def test_no_server_available_names_domain_and_etcd(etcd, domain):
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        with pytest.raises(NoServerAvailable) as caught:
            client.hello("anyone")
    assert domain in str(caught.value) and etcd.endpoint in str(caught.value)


def test_bad_domain_and_selector_are_refused(etcd):
    with pytest.raises(ConfigError, match="domain"):
        ClusterClient("bad domain", etcd=etcd.endpoint)
    with pytest.raises(ConfigError, match="selector"):
        ClusterClient("ok.domain", etcd=etcd.endpoint, selector="fastest")


def test_closing_leaves_no_thread(etcd, domain, hello_servers):
    server = hello_servers(domain, "tcp")
    # the server's own threads (key watch, keepalive stream) start with its first refresh:
    # let them exist before the snapshot, so only the client's threads are looked at
    deadline = time.monotonic() + 5
    while server.registrar.refreshes < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = {t.ident for t in threading.enumerate()}
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        client.hello("x")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not extra:
            break
        time.sleep(0.05)
    assert not extra, extra


def test_a_call_whose_servers_all_refuse_fails_at_once_with_the_causes(etcd, domain):
    from hprose_cluster import ServerInfo
    from hprose_cluster.embedded import free_port
    from hprose_cluster.etcd import EtcdConfig, EtcdConnection

    dead = ServerInfo(domain, "tcp4://127.0.0.1:%d" % free_port(), uuid="dead")
    with EtcdConnection(EtcdConfig.coerce(etcd.endpoint)) as conn:
        conn.put(dead.key(), dead.to_json())
        try:
            with ClusterClient(domain, etcd=etcd.endpoint) as client:
                started = time.monotonic()
                with pytest.raises(NoServerAvailable) as caught:
                    client.hello("x")
                # no waiting for a new server (FailoverPolicy.wait_for_server is 3 s)
                assert time.monotonic() - started < 2.5
        finally:
            conn.delete(dead.key())
    assert dead.url in str(caught.value) and "refused" in str(caught.value).lower()


def test_a_shared_discovery_must_be_of_the_same_domain(etcd, domain):
    from hprose_cluster import Discovery

    with Discovery(domain, etcd=etcd.endpoint) as discovery:
        with pytest.raises(ConfigError, match="domain"):
            ClusterClient(domain + "x", discovery=discovery)
        with ClusterClient(domain, discovery=discovery) as one, \
                ClusterClient(domain, discovery=discovery) as two:
            assert one.discovery is two.discovery
        assert discovery.servers() == ()  # still usable: the clients did not close it

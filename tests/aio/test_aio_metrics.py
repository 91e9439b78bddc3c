"""AsyncClusterClient records the client metrics of ClusterClient (the same ``CallAttempts``):
each ``hprose_cluster_client_*`` counter moves by exactly what the calls did, against real
servers in a real etcd; and a call to a domain of unusable records names them in its
NoServerAvailable."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hprose.common import HproseException

from hprose_cluster import (AsyncClusterClient, CallTimeout, ClusterClient, FailoverPolicy,
                            HproseClusterError, NoServerAvailable, Registrar, ServerInfo,
                            TransportError)
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

from tests.support.metrics import CALLS, EJECTIONS, NO_SERVER, RETRIES, SECONDS, value
from tests.support.metrics import registry  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

IN_FLIGHT = "hprose_cluster_server_in_flight"


def totals(registry: Any, domain: str) -> dict[str, float]:
    return {"calls": value(registry, CALLS, domain=domain),
            "seconds": value(registry, SECONDS, domain=domain),
            "retries": value(registry, RETRIES, domain=domain),
            "ejections": value(registry, EJECTIONS, domain=domain),
            "no_server": value(registry, NO_SERVER, domain=domain)}


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within %ss" % timeout
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["tcp", "http", "ws"])
def test_calls_business_errors_and_timeouts(registry, etcd, domain, hello_servers, arun,
                                            transport):
    server = hello_servers(domain, transport)
    url = server.url

    async def main() -> None:
        # timeout=1.5: every call must be answered within it, the first ones opening the
        # connection (a WebSocket handshake too); 0.5 s was little for a loaded machine
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, timeout=1.5) as client:
            results = await asyncio.gather(*(client.hello("m%d" % i) for i in range(7)))
            assert results == ["Hello m%d" % i for i in range(7)]
            for _ in range(3):
                with pytest.raises(HproseException, match="boom"):
                    await client.fail()
            with pytest.raises(CallTimeout):
                await client.sleep(4)  # sent, not idempotent: not retried
        assert value(registry, CALLS, domain=domain, server=url, outcome="ok") == 7
        assert value(registry, CALLS, domain=domain, server=url, outcome="error") == 3
        assert value(registry, CALLS, domain=domain, server=url, outcome="timeout") == 1
        assert value(registry, CALLS, domain=domain, outcome="transport_error") == 0
        assert totals(registry, domain) == {"calls": 11, "seconds": 11, "retries": 0,
                                            "ejections": 0, "no_server": 0}

    arun(main())


def test_a_refused_server_is_counted_ejected_once_and_the_call_retried(registry, etcd, domain,
                                                                       hello_servers, arun):
    live = hello_servers(domain, "tcp")
    dead = "tcp4://127.0.0.1:%d" % free_port()  # registered, nothing listens: refused

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, selector="round-robin",
                                      failover=FailoverPolicy(eject_for=60)) as client:
            assert await client.wait_for_servers(10, count=2)
            for _ in range(20):
                assert await client.hello("x") == "Hello x"
        # round-robin reached the dead server within two calls: refused once (nothing sent,
        # so retried although not idempotent), ejected at once, then skipped
        assert value(registry, CALLS, domain=domain, server=dead,
                     outcome="transport_error") == 1
        assert value(registry, EJECTIONS, domain=domain, server=dead) == 1
        assert value(registry, CALLS, domain=domain, server=live.url, outcome="ok") == 20
        assert totals(registry, domain) == {"calls": 21, "seconds": 20, "retries": 1,
                                            "ejections": 1, "no_server": 0}

    with Registrar(ServerInfo(domain, dead), etcd=etcd.endpoint, ttl=5, heartbeat=1):
        arun(main())


def test_calls_to_dead_servers_end_once_each_with_no_server(registry, etcd, domain, arun):
    """Only dead servers: each call is refused by both (each refusal counted, each server
    ejected once) and ends with NoServerAvailable, counted once per call."""
    dead = ["tcp4://127.0.0.1:%d" % free_port() for _ in range(2)]

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      failover=FailoverPolicy(eject_for=60)) as client:
            assert await client.wait_for_servers(10, count=2)
            for _ in range(3):
                with pytest.raises(NoServerAvailable) as caught:
                    await client.hello("x")
                assert isinstance(caught.value.__cause__, TransportError)
        assert totals(registry, domain) == {"calls": 6, "seconds": 3, "retries": 3,
                                            "ejections": 2, "no_server": 3}

    registrars = [Registrar(ServerInfo(domain, url), etcd=etcd.endpoint, ttl=5, heartbeat=1)
                  for url in dead]
    try:
        for registrar in registrars:
            registrar.start()
        arun(main())
    finally:
        for registrar in registrars:
            registrar.close()


def test_an_empty_domain_counts_no_server(registry, etcd, domain, arun):
    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      failover=FailoverPolicy(wait_for_server=0.2)) as client:
            for _ in range(2):
                with pytest.raises(NoServerAvailable, match="no server available for hello"):
                    await client.hello("x")
        assert totals(registry, domain) == {"calls": 0, "seconds": 2, "retries": 0,
                                            "ejections": 0, "no_server": 2}

    arun(main())


def test_a_cancelled_call_and_a_call_cut_by_aclose_end_once(registry, etcd, domain,
                                                            hello_servers, arun):
    """A call ended by its task's cancellation, or by the client closing under it, counts as
    one call (its duration) and no attempt outcome; it is not a no-server call."""
    hello_servers(domain, "tcp")

    def in_flight() -> float:
        return value(registry, IN_FLIGHT, domain=domain)

    async def main() -> None:
        client = AsyncClusterClient(domain, etcd=etcd.endpoint)
        await client.start()
        assert await client.wait_for_servers(10)
        task = asyncio.ensure_future(client.sleep(5))
        await until(lambda: in_flight() == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: in_flight() == 0)
        assert totals(registry, domain) == {"calls": 0, "seconds": 1, "retries": 0,
                                            "ejections": 0, "no_server": 0}
        task = asyncio.ensure_future(client.sleep(5))
        await until(lambda: in_flight() == 1)
        await client.aclose()
        with pytest.raises(HproseClusterError):
            await task
        assert value(registry, SECONDS, domain=domain) == 2
        assert value(registry, NO_SERVER, domain=domain) == 0

    arun(main())


def test_blocking_and_asyncio_clients_of_a_domain_add_up(registry, etcd, domain,
                                                         hello_servers, arun):
    server = hello_servers(domain, "http")

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint) as client:
            for _ in range(4):
                assert await client.hello("a") == "Hello a"

    arun(main())
    with ClusterClient(domain, etcd=etcd.endpoint) as blocking:
        assert blocking.discovery.wait_for_servers(10)
        for _ in range(5):
            assert blocking.hello("b") == "Hello b"
    assert value(registry, CALLS, domain=domain, server=server.url, outcome="ok") == 9
    assert value(registry, SECONDS, domain=domain) == 9


def test_no_server_available_names_the_skipped_records(etcd, domain, arun):
    keys = {"hprose-service/%s/g1" % domain: json.dumps(
        {"UUID": "g1", "Domain": domain, "ServerUrl": "gopher://127.0.0.1:1", "CPU": 1}).encode(),
        "hprose-service/%s/junk" % domain: b"{not json"}

    async def main() -> str:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      failover=FailoverPolicy(wait_for_server=0.2)) as client:
            assert len(client.discovery.view.skipped) == 2
            with pytest.raises(NoServerAvailable) as caught:
                await client.hello("x")
        return str(caught.value)

    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer:
        for key, data in keys.items():
            writer.put(key, data)
        try:
            message = arun(main())
        finally:
            for key in keys:
                writer.delete(key)
    assert "no server available for hello in domain %r" % domain in message
    assert "2 records skipped" in message
    assert all(key in message for key in keys), message
    assert "scheme 'gopher'" in message and "not valid JSON" in message

"""Client metrics against real servers: each counter moves by exactly what the calls did.

Calls, business errors, timeouts, an empty domain, ejection of a registered server that
refuses connections (and again after its cooldown), and a SIGKILLed server under calls,
where the client's per-server counts must equal what each surviving server counted itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from hprose.common import HproseException

from hprose_cluster import (CallTimeout, ClusterClient, FailoverPolicy, NoServerAvailable,
                            Registrar, ServerInfo)
from hprose_cluster.embedded import free_port

from tests.support.cluster_procs import wait_until
from tests.support.metrics import (CALLS, EJECTIONS, NO_SERVER, RETRIES, SECONDS,
                                   start_metrics_server, value)
from tests.support.metrics import registry  # noqa: F401 - a fixture

REQUESTS = "hprose_cluster_server_requests_total"


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_calls_and_business_errors(registry: Any, etcd: Any, domain: str, hello_servers: Any,
                                   transport: str) -> None:
    server = hello_servers(domain, transport)
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        assert client.discovery.wait_for_servers(10)
        for _ in range(7):
            assert client.hello("m") == "Hello m"
        for _ in range(3):
            with pytest.raises(HproseException, match="boom"):
                client.fail()
    url = server.url
    assert value(registry, CALLS, domain=domain, server=url, outcome="ok") == 7
    assert value(registry, CALLS, domain=domain, server=url, outcome="error") == 3
    assert value(registry, CALLS, domain=domain, outcome="transport_error") == 0
    assert value(registry, SECONDS, domain=domain) == 10
    assert value(registry, RETRIES, domain=domain) == 0
    assert value(registry, NO_SERVER, domain=domain) == 0
    # the server in this process counted the same requests, by method
    assert value(registry, REQUESTS, domain=domain, method="hello", outcome="ok") == 7
    assert value(registry, REQUESTS, domain=domain, method="fail", outcome="error") == 3
    assert value(registry, REQUESTS, domain=domain, outcome="error", method="hello") == 0


def test_timeout_is_its_own_outcome(registry: Any, etcd: Any, domain: str,
                                    hello_servers: Any) -> None:
    server = hello_servers(domain, "tcp")
    # timeout=1: the call opens the connection too, and must be sent before it times out
    # (with 0.3 s a loaded machine could time out unsent: the server never ran it)
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=1.0) as client:
        assert client.discovery.wait_for_servers(10)
        with pytest.raises(CallTimeout):
            client.sleep(3)  # sent, not idempotent: not retried
        assert value(registry, CALLS, domain=domain, server=server.url, outcome="timeout") == 1
        assert value(registry, CALLS, domain=domain, outcome="transport_error") == 0
        assert value(registry, SECONDS, domain=domain) == 1
        assert value(registry, RETRIES, domain=domain) == 0
        # the server still runs it, then counts it as served
        assert wait_until(lambda: value(registry, REQUESTS, domain=domain, method="sleep",
                                        outcome="ok") == 1, 10)


def test_empty_domain_counts_no_server(registry: Any, etcd: Any, domain: str) -> None:
    policy = FailoverPolicy(wait_for_server=0.2)
    with ClusterClient(domain, etcd=etcd.endpoint, failover=policy) as client:
        for _ in range(2):
            with pytest.raises(NoServerAvailable):
                client.hello("x")
    assert value(registry, NO_SERVER, domain=domain) == 2
    assert value(registry, SECONDS, domain=domain) == 2
    assert value(registry, CALLS, domain=domain) == 0


def test_ejection_counted_once_then_again_after_cooldown(registry: Any, etcd: Any, domain: str,
                                                         hello_servers: Any) -> None:
    live = hello_servers(domain, "tcp")
    dead = "tcp4://127.0.0.1:%d" % free_port()  # registered, nothing listens: refused
    policy = FailoverPolicy(eject_for=60)
    with Registrar(ServerInfo(domain, dead), etcd=etcd.endpoint, ttl=5, heartbeat=1), \
            ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin",
                          failover=policy) as client:
        assert client.discovery.wait_for_servers(10, count=2)
        for _ in range(20):
            assert client.hello("x") == "Hello x"
        # round-robin reached the dead server within two calls: refused once, ejected at
        # once, the call retried on the live one; then skipped for the cooldown
        assert value(registry, CALLS, domain=domain, server=dead, outcome="transport_error") == 1
        assert value(registry, EJECTIONS, domain=domain, server=dead) == 1
        assert value(registry, RETRIES, domain=domain) == 1
        assert value(registry, CALLS, domain=domain, server=live.url, outcome="ok") == 20
        assert value(registry, CALLS, domain=domain, server=dead, outcome="ok") == 0
        assert value(registry, SECONDS, domain=domain) == 20



def test_only_dead_servers_still_tried_but_ejected_once(registry: Any, etcd: Any,
                                                        domain: str) -> None:
    """With nothing healthy the ejected server is tried anyway: each refusal is counted,
    but it became ejected only once; each call ends with NoServerAvailable."""
    dead = "tcp4://127.0.0.1:%d" % free_port()
    with Registrar(ServerInfo(domain, dead), etcd=etcd.endpoint, ttl=5, heartbeat=1), \
            ClusterClient(domain, etcd=etcd.endpoint,
                          failover=FailoverPolicy(eject_for=60)) as client:
        assert client.discovery.wait_for_servers(10)
        for _ in range(3):
            with pytest.raises(NoServerAvailable):
                client.hello("x")
    assert value(registry, CALLS, domain=domain, server=dead, outcome="transport_error") == 3
    assert value(registry, EJECTIONS, domain=domain, server=dead) == 1
    assert value(registry, NO_SERVER, domain=domain) == 3
    assert value(registry, RETRIES, domain=domain) == 0
    assert value(registry, SECONDS, domain=domain) == 3


def test_ejected_again_after_each_cooldown(registry: Any, etcd: Any, domain: str,
                                           hello_servers: Any) -> None:
    """With a short cooldown the dead server comes back on probation and is refused again:
    every refusal is one ejection and one retry, however the calls and cooldowns interleave
    (an ejected server is never picked while a healthy one is there)."""
    live = hello_servers(domain, "tcp")
    dead = "tcp4://127.0.0.1:%d" % free_port()
    policy = FailoverPolicy(eject_for=0.2)
    with Registrar(ServerInfo(domain, dead), etcd=etcd.endpoint, ttl=5, heartbeat=1), \
            ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin",
                          failover=policy) as client:
        assert client.discovery.wait_for_servers(10, count=2)
        calls = 0
        refused = lambda: value(registry, CALLS, domain=domain, server=dead,  # noqa: E731
                                outcome="transport_error")
        while refused() < 3:
            assert calls < 2000, "the dead server was not tried again after its cooldowns"
            assert client.hello("x") == "Hello x"
            calls += 1
            time.sleep(0.005)
        assert value(registry, EJECTIONS, domain=domain, server=dead) == refused() == 3
        assert value(registry, RETRIES, domain=domain) == 3
        assert value(registry, CALLS, domain=domain, server=live.url, outcome="ok") == calls


def test_sigkill_failover_counts_match_servers(registry: Any, etcd: Any, domain: str,
                                               caplog: Any) -> None:
    """Three server processes, one SIGKILLed between calls: the client counts every failed
    attempt on it (one log line each), ejects it once, retries each, loses no call, and its
    per-server ok counts equal what each surviving server's own metrics say."""
    caplog.set_level(logging.INFO, logger="hprose_cluster.client")
    procs = []
    try:
        for _ in range(3):
            procs.append(start_metrics_server(domain, etcd.endpoint))
        with ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin",
                           idempotent=True, timeout=5) as client:
            assert client.discovery.wait_for_servers(10, count=3)
            metrics_urls = {s.url: s.extra["Metrics"] for s in client.servers()}
            for _ in range(30):
                client.hello("before")
            victim = procs[1]
            victim.kill()
            for _ in range(60):
                client.hello("after")  # idempotent: a failed attempt goes elsewhere
            dead = victim.url
            failed = [r for r in caplog.records
                      if r.name == "hprose_cluster.client" and " on %s failed" % dead in r.getMessage()]
            lost = (value(registry, CALLS, domain=domain, server=dead, outcome="transport_error")
                    + value(registry, CALLS, domain=domain, server=dead, outcome="timeout"))
            assert failed and lost == len(failed)
            assert value(registry, EJECTIONS, domain=domain, server=dead) == 1
            assert value(registry, RETRIES, domain=domain) == len(failed)
            assert value(registry, CALLS, domain=domain, outcome="ok") == 90
            assert value(registry, SECONDS, domain=domain) == 90
            for proc in procs:
                if proc is victim:
                    continue
                ok = value(registry, CALLS, domain=domain, server=proc.url, outcome="ok")
                served = value(metrics_urls[proc.url], REQUESTS, domain=domain, method="hello",
                               outcome="ok")
                assert ok == served > 0
    finally:
        for proc in procs:
            proc.close()

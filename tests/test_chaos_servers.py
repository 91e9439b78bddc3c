"""Chaos under load, the servers: real etcd and real hello server processes, 8 client threads
calling an idempotent function back to back, while servers are SIGKILLed, drained in a rolling
restart, and paused past their TTL.  Settings and bound: tests.support.chaos.
"""

from __future__ import annotations

import logging
import time

import pytest

from tests.support.chaos import TTL, client_urls, under_load, wait_converged
from tests.support.chaos import fleet_factory  # noqa: F401 - a fixture
from tests.support.cluster_procs import wait_until

log = logging.getLogger("hprose_cluster.tests.chaos")

pytestmark = [pytest.mark.slow]


# ------------------------------------------------------------------------------- (a) SIGKILL


@pytest.mark.timeout(90)
def test_a_server_sigkilled_under_load_costs_no_call(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        victim = fleet.servers[0]
        victim.kill()
        started = time.monotonic()
        # expiry <= ttl after the last keepalive, etcd revokes every 0.5 s, then the watch
        assert wait_until(lambda: victim.url not in client_urls(client), TTL + 3)
        gone_after = time.monotonic() - started
        assert load.wait_calls(200)
    log.info("(a) crashed server left the client's list after %.2f s", gone_after)
    assert not load.failures, load.describe_failures()
    assert client_urls(client) == fleet.urls()


# ------------------------------------------------------------------------ (b) rolling restart


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport,idempotent", [
    pytest.param("tcp", True, id="tcp-idempotent"),
    pytest.param("tcp", False, id="tcp-not-idempotent"),
    # HTTP: a connection carries one call at a time, so clients open new ones while a
    # server drains; they must be accepted and served until its drain delay is over
    pytest.param("http", False, id="http-not-idempotent"),
])
def test_b_rolling_restart_with_drain_costs_no_call(etcd_factory, fleet_factory, domain,
                                                    transport, idempotent):
    """Drain makes a rolling restart free even for calls that may not be retried once sent:
    clients stop choosing a server before it stops accepting calls."""
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint, transport=transport)
    with under_load(fleet, domain, etcd.endpoint, idempotent=idempotent,
                    max_seconds=90) as (client, load):
        for old in list(fleet.servers):
            started = time.monotonic()
            code = old.terminate()
            assert code == 0, old.log_tail()
            left = time.monotonic() - started
            assert old.url not in client_urls(client)  # gone before the process exited
            new, = fleet.start(1)
            assert wait_until(lambda: new.url in client_urls(client), 5)
            log.info("(b) %s drained and exited in %.2f s", old.url, left)
            assert load.wait_calls(100)
    assert not load.failures, load.describe_failures()
    assert client_urls(client) == fleet.urls()
    assert len(fleet.urls()) == 3


# --------------------------------------------------------------- (g) one server paused past TTL


@pytest.mark.timeout(90)
def test_g_server_paused_past_ttl_registers_again(etcd_factory, fleet_factory, domain):
    etcd = etcd_factory()
    fleet = fleet_factory(domain, etcd.endpoint)
    with under_load(fleet, domain, etcd.endpoint) as (client, load):
        victim = fleet.servers[0]
        victim.pause()
        # expiry <= ttl after the last keepalive, etcd revokes every 0.5 s, then the watch
        assert wait_until(lambda: victim.url not in client_urls(client), TTL + 3)
        time.sleep(1.0)
        victim.resume()
        log.info("(g) paused server listed again %.2f s after it resumed",
                 wait_converged(client, etcd.endpoint, domain, fleet))
        assert load.wait_calls(200)
    log.info("(g) %s", load.describe_failures())
    assert len(client_urls(client)) == 3

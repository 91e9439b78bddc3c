"""Failover rules with real servers: what is retried elsewhere (refused connections; timeouts
and crashes mid-call only when idempotent), what never is (business errors, a server already
tried), ejection and its cool-down, waiting for a server to appear.

Short settings (tests.support.resilience): ttl=2, heartbeat=0.5, check_interval=0.5,
max_backoff=3.
"""

from __future__ import annotations

import threading
import time

import pytest
from hprose.common import HproseException

from hprose_cluster import ClusterClient
from hprose_cluster.embedded import free_port
from hprose_cluster.errors import CallTimeout, ConfigError, NoServerAvailable, TransportError
from hprose_cluster.failover import FailoverPolicy
from hprose_cluster.transport.tcp import TcpServer

from tests.support.cluster_procs import Fleet, wait_until
from tests.support.resilience import CHECK, HEARTBEAT, TTL, Ordered, new_registrar
from tests.support.resilience import counting  # noqa: F401 - a fixture


def dead_url() -> str:
    return "tcp://127.0.0.1:%d" % free_port()


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


def _counts(slow, fast, slow_calls: int) -> tuple[int, int]:
    """(slow.calls, fast.calls) once the slow server ran ``slow_calls`` calls: a call the
    client gave up on may start on the server a moment later (a loaded machine)."""
    wait_until(lambda: slow.calls >= slow_calls, 5)
    return slow.calls, fast.calls


@pytest.mark.timeout(40)
def test_a_timeout_after_send_is_retried_only_when_idempotent(etcd, domain, counting):
    slow, fast = counting(delay=3.0), counting()
    # timeout is the whole call's; attempt_timeout lets a hung first server leave time for
    # the second (a timeout of 1 alone would be spent on the first attempt).  1 s (was 0.5)
    # for the attempt on the slow server (3 s): the call must be sent within it, connecting
    # first, which a loaded machine may not do within 0.5 s (then it is retried unsent)
    with ClusterClient(domain, etcd=etcd.endpoint, selector=Ordered(slow.url, fast.url),
                       timeout=5, check_interval=CHECK,
                       failover=FailoverPolicy(eject_after=0, attempt_timeout=1.0)) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        with pytest.raises(CallTimeout):
            client.work(1)
        assert _counts(slow, fast, 1) == (1, 0)
        assert client.work(2, idempotent=True) == 2  # per call
        assert _counts(slow, fast, 2) == (2, 1)
        assert client.invoke("work", [3], idempotent=True) == 3
        assert _counts(slow, fast, 3) == (3, 2)
    with ClusterClient(domain, etcd=etcd.endpoint, selector=Ordered(slow.url, fast.url),
                       timeout=5, idempotent=True, check_interval=CHECK,
                       failover=FailoverPolicy(attempt_timeout=1.0)) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        assert client.work(4) == 4  # per client
        assert _counts(slow, fast, 4) == (4, 3)
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
                # the kill must land while the call is on the victim: 1 s for the call to get
                # there and 2 s more before it would have answered (0.5 s and 0.5 s were too
                # little for a loaded machine: a late call is refused, and so retried elsewhere
                # even when not idempotent; a late kill finds the call answered)
                killer = threading.Timer(1.0, victim.kill)
                killer.start()
                started = time.monotonic()
                if expect_ok:
                    assert client.sleep(2, idempotent=idempotent) == 2
                else:
                    with pytest.raises(TransportError) as caught:
                        client.sleep(2, idempotent=idempotent)
                    assert caught.value.sent
                killer.join()
                assert time.monotonic() - started < 7  # the retry is 1 + 2 s; timeout is 10
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
    # attempts of 0.6 s (was 0.3) on servers taking 2 s: each attempt must be sent (and
    # connect first) within it on a loaded machine; the call's timeout (3 s) is the whole's
    servers = [counting(delay=2.0), counting(delay=2.0)]
    policy = FailoverPolicy(max_attempts=5, idempotent=True, wait_for_server=0, eject_after=0,
                            attempt_timeout=0.6)
    with ClusterClient(domain, etcd=etcd.endpoint, failover=policy, timeout=3,
                       check_interval=CHECK) as client:
        assert client.discovery.wait_for_servers(5, count=2)
        with pytest.raises(NoServerAvailable) as caught:
            client.work(1)
    # a call given up on may start on its server a moment later
    wait_until(lambda: all(s.calls >= 1 for s in servers), 5)
    assert [s.calls for s in servers] == [1, 1]
    assert all(s.url in str(caught.value) for s in servers)


@pytest.mark.timeout(40)
def test_a_crashed_but_listed_server_is_ejected_then_tried_again_after_the_cool_down(
        etcd, domain, counting):
    live = counting()
    down = dead_url()
    port = int(down.rsplit(":", 1)[1])
    # eject_for=3 (was 1): the 20 calls below must all run within one ejection, else it may
    # have just run out when is_ejected() is asserted (a loaded machine can take 1 s for them)
    policy = FailoverPolicy(eject_for=3.0)
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
            time.sleep(3.2)  # the cool-down
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

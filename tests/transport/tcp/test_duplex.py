"""Full-duplex TCP client: the callers read their own replies (leader/follower), so the
reader role must pass on whenever its holder leaves (reply in, timed out, connection broken),
an idle connection closed by the server must be noticed before a request is sent, and no
thread is started per connection."""

from __future__ import annotations

import threading
import time

import pytest

from hprose_cluster.errors import CallTimeout, TransportError
from hprose_cluster.transport.tcp import TcpClient, TcpServer

from tests.support.cluster_procs import wait_until
from tests.support.tcp import make_server, restarted

pytestmark = pytest.mark.timeout(60)


def _run(results: dict, key: str, func,  # type: ignore[no-untyped-def]
         *args, **options) -> threading.Thread:
    def body() -> None:
        try:
            results[key] = func(*args, **options)
        except Exception as error:  # collected and asserted by the test
            results[key] = error

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_no_reader_thread(server: TcpServer) -> None:
    before = set(threading.enumerate())
    with TcpClient(server.url, timeout=5, full_duplex=True) as client:
        for n in range(20):
            assert client.hello(str(n)) == "Hello %d" % n
        added = {t.name for t in set(threading.enumerate()) - before}
    # only the in-process server's own threads (its connection thread and watchdog)
    assert all("-conn-" in name or "-watch-" in name for name in added), added


def test_a_reader_that_times_out_hands_the_role_to_a_waiting_call(server: TcpServer) -> None:
    with TcpClient(server.url, timeout=5, full_duplex=True) as client:
        assert client.hello("warm") == "Hello warm"
        results: dict = {}
        # the first call reads (nobody else is), the second sleeps until it is handed over
        first = _run(results, "short", client.slow, 1.0, "short", timeout=0.3)
        assert wait_until(lambda: server.in_flight == 1, 5)
        second = _run(results, "long", client.slow, 0.6, "long", timeout=10)
        first.join(10)
        second.join(10)
        assert isinstance(results["short"], CallTimeout) and results["short"].sent is True
        assert results["long"] == "long"
        assert client.hello("after") == "Hello after"  # the late "short" is dropped
        time.sleep(0.6)
        assert client.hello("later") == "Hello later"


def test_replies_out_of_order_reach_their_callers(server: TcpServer) -> None:
    with TcpClient(server.url, timeout=10, full_duplex=True) as client:
        results: dict = {}
        threads = [_run(results, str(n), client.slow, 0.05 * (8 - n), n) for n in range(8)]
        for thread in threads:
            thread.join(10)
        assert results == {str(n): n for n in range(8)}


def test_a_broken_connection_fails_every_waiting_call_then_a_new_one_is_used(
        server: TcpServer) -> None:
    with TcpClient(server.url, timeout=10, full_duplex=True) as client:
        assert client.hello("a") == "Hello a"
        results: dict = {}
        threads = [_run(results, str(n), client.slow, 2, n) for n in range(4)]
        assert wait_until(lambda: server.in_flight == 4, 5)
        for conn in server.connections():
            server.close_connection(conn)
        for thread in threads:
            thread.join(10)
        assert all(isinstance(r, TransportError) and r.sent for r in results.values()), results
        assert client.hello("b") == "Hello b"


def test_an_idle_connection_closed_by_the_server_is_replaced_before_sending() -> None:
    server = make_server()
    server.start(block=False)
    with TcpClient(server.url, timeout=5, full_duplex=True) as client:
        assert client.hello("a") == "Hello a"
        with restarted(server):
            assert client.hello("b") == "Hello b"  # not a "sent" failure

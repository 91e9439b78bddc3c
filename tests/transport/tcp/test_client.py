"""TCP transport, client side: URLs, pooling, full duplex, timeouts, broken connections."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from hprose_cluster.errors import CallTimeout, ConfigError, ConnectError, FrameError, TransportError
from hprose_cluster.transport.tcp import TcpClient, TcpServer, TcpTransport, parse_tcp_url

from tests.support.cluster_procs import has_ipv6_loopback, wait_until
from tests.support.tcp import free_port, make_server, restarted
from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- URLs, schemes


@pytest.mark.parametrize("url", ["http://127.0.0.1:80", "unix:/tmp/x", "tcp://127.0.0.1",
                                 "tcp://:4321", "tcp://127.0.0.1:notaport", "tcp8://h:1"])
def test_bad_urls_raise_config_error_naming_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TcpTransport(url)
    assert url in str(caught.value)


def test_url_parsing() -> None:
    assert parse_tcp_url("tcp://example.com:4321/ignored/path")[:3] == ("tcp", "example.com", 4321)
    assert parse_tcp_url("TCP4://127.0.0.1:1")[3] == socket.AF_INET
    assert parse_tcp_url("tcp6://[::1]:2")[1:] == ("::1", 2, socket.AF_INET6)


def test_server_scheme_and_url() -> None:
    assert TcpServer("127.0.0.1").scheme == "tcp4"
    assert TcpServer("0.0.0.0").scheme == "tcp4"
    assert TcpServer("::").scheme == "tcp6"
    assert TcpServer("localhost").scheme == "tcp"
    assert TcpServer("localhost", family=socket.AF_INET).scheme == "tcp4"
    server = TcpServer("127.0.0.1", 0)
    server.listen()
    server.listen()  # idempotent
    try:
        host, port = server.address  # type: ignore[misc]
        assert host == "127.0.0.1" and port > 0
        assert server.url == "tcp4://127.0.0.1:%d" % port
    finally:
        server.stop()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_round_trip() -> None:
    server = make_server("::1")
    server.start(block=False)
    try:
        assert server.url.startswith("tcp6://[::1]:")
        for full_duplex in (False, True):
            with TcpClient(server.url, timeout=5, full_duplex=full_duplex) as client:
                assert client.hello("v6") == "Hello v6"
        with pytest.raises(ConnectError):  # tcp4 to an IPv6 literal cannot connect
            TcpClient("tcp4://[::1]:%d" % server.address[1], timeout=5).hello("x")  # type: ignore[index]
    finally:
        server.stop()


# --------------------------------------------------------------------------- concurrency


def test_32_threads_over_one_full_duplex_connection(server: TcpServer) -> None:
    accepted_before = len(server.connections())
    with TcpClient(server.url, timeout=10, full_duplex=True) as client:
        def work(n: int) -> None:
            for i in range(40):
                value = "%d-%d" % (n, i)
                assert client.echo(value) == value
                if i % 10 == 0:
                    assert client.slow(0.01, n) == n

        errors = run_in_threads(work, 32)
        assert not errors, errors[:3]
        assert len(server.connections()) - accepted_before == 1
        assert server.state["max_in_flight"] > 1  # type: ignore[attr-defined]


def test_half_duplex_pool_is_bounded_and_reused(server: TcpServer) -> None:
    with TcpClient(server.url, timeout=10, pool_size=2) as client:
        results: list[object] = []
        threads = [threading.Thread(target=lambda n=n: results.append(client.slow(0.1, n)))
                   for n in range(6)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        elapsed = time.monotonic() - started
        assert sorted(results) == list(range(6))  # type: ignore[type-var]
        assert server.state["max_in_flight"] == 2  # type: ignore[attr-defined]
        assert elapsed >= 0.29  # three waves of two
        assert client.transport.pool.open_count == 2
        assert len(server.connections()) == 2


@pytest.mark.parametrize("full_duplex", [False, True], ids=["half", "full"])
def test_4_mib_argument(server: TcpServer, full_duplex: bool) -> None:
    blob = os.urandom(4 * 1024 * 1024)
    with TcpClient(server.url, timeout=20, full_duplex=full_duplex) as client:
        assert client.echo(blob) == blob
        assert client.hello("after") == "Hello after"


# --------------------------------------------------------------------------- failures


def test_connect_refused_is_connect_error() -> None:
    url = "tcp://127.0.0.1:%d" % free_port()
    for full_duplex in (False, True):
        with TcpClient(url, timeout=5, full_duplex=full_duplex) as client:
            with pytest.raises(ConnectError) as caught:
                client.hello("x")
        assert caught.value.sent is False
        assert url in str(caught.value) and caught.value.url == url
        assert caught.value.__cause__ is not None


@pytest.mark.parametrize("full_duplex", [False, True], ids=["half", "full"])
def test_timeout_is_call_timeout_and_late_reply_is_not_taken(server: TcpServer,
                                                             full_duplex: bool) -> None:
    with TcpClient(server.url, timeout=5, full_duplex=full_duplex, pool_size=1) as client:
        # connected first, so the 0.1 s are not spent connecting (then the call is unsent);
        # the late reply comes 2 s after the call, so "it did not wait for it" (< 1 s) leaves
        # room for a loaded machine (a bound of 0.45 s against a 0.5 s reply did not)
        assert client.hello("warm") == "Hello warm"
        started = time.monotonic()
        with pytest.raises(CallTimeout) as caught:
            client.slow(2.0, "late", timeout=0.1)
        assert time.monotonic() - started < 1.0
        assert caught.value.sent is True and server.url in str(caught.value)
        assert client.hello("next") == "Hello next"  # not the late "late"
        time.sleep(2.0)
        assert client.hello("again") == "Hello again"


def test_waiting_for_a_pool_slot_times_out_unsent(server: TcpServer) -> None:
    with TcpClient(server.url, timeout=5, pool_size=1) as client:
        busy = threading.Thread(target=client.slow, args=(2.0, 1))
        busy.start()
        # the only slot is taken once the busy call runs on the server (a fixed 0.1 s sleep
        # could end before a starved thread took it; then this call got the slot)
        assert wait_until(lambda: server.in_flight == 1, 5)
        with pytest.raises(CallTimeout) as caught:
            client.hello("x", timeout=0.1)
        assert caught.value.sent is False
        busy.join()


def test_broken_connection_fails_only_its_calls(server: TcpServer) -> None:
    with TcpClient(server.url, timeout=5, pool_size=2) as client:
        outcomes: list[object] = []
        threads = [threading.Thread(target=lambda: outcomes.append(client.slow(0.3, "ok")))]
        threads[0].start()
        time.sleep(0.05)
        # break one pooled connection from the server side, while the other one is in use
        victim = threading.Thread(target=lambda: outcomes.append(_catch(client.slow, 0.3, "x")))
        victim.start()
        time.sleep(0.1)
        conns = sorted(server.connections(), key=lambda c: c.peer[1])
        server.close_connection(conns[-1])
        for thread in threads + [victim]:
            thread.join(5)
        assert "ok" in outcomes
        assert any(isinstance(o, TransportError) for o in outcomes)
        assert client.hello("y") == "Hello y"


def _catch(func, *args):  # type: ignore[no-untyped-def]
    try:
        return func(*args)
    except TransportError as error:
        return error


def test_idle_connection_dropped_by_server_is_replaced() -> None:
    server = make_server()
    server.start(block=False)
    with TcpClient(server.url, timeout=5) as client:
        assert client.hello("a") == "Hello a"
        with restarted(server):
            assert client.hello("b") == "Hello b"


def test_oversized_reply_is_frame_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"\x7f\xff\xff\xff" + b"x" * 100)  # declares 2 GiB
        time.sleep(0.5)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with TcpClient("tcp://127.0.0.1:%d" % port, timeout=5, max_frame=1024) as client:
            with pytest.raises(FrameError) as caught:
                client.hello("x")
            assert "2147483647" in str(caught.value) and str(port) in str(caught.value)
            assert not client.transport.pool.open_count  # that connection was dropped
    finally:
        thread.join(5)
        listener.close()



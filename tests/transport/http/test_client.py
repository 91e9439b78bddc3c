"""HTTP transport, client side: round trips, keep-alive and stale connections, limits, HTTPS."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import hprose
import pytest
from hprose.common import HproseException

from hprose_cluster.deadline import Deadline
from hprose_cluster.embedded import free_port
from hprose_cluster.errors import CallTimeout, ConfigError, ConnectError, TransportError
from hprose_cluster.transport.http import HttpClient, HttpServer, HttpTransport

from tests.support.http import Servers
from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------------------- round trips


def test_round_trip_with_our_client(server: HttpServer) -> None:
    with HttpClient(server.url) as client:
        assert client.hello("world") == "Hello world"
        assert client.sum(12, 30) == 42
        assert client.useService().hello("proxy") == "Hello proxy"
        with pytest.raises(HproseException, match="boom"):
            client.fail()


def test_hprose_own_http_client_against_our_server(server: HttpServer) -> None:
    client = hprose.HttpClient(server.url)
    assert client.hello("hprose") == "Hello hprose"
    assert client.sum(1, 2) == 3


def test_get_returns_function_list_as_text_plain(server: HttpServer) -> None:
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain"
        body = response.read()
    assert body.startswith(b"Fa") and b'"hello"' in body and body.endswith(b"z")


def test_ipv6_loopback(servers: Servers) -> None:
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6")
    server = servers("::1")
    assert server.address[0] == "::1"
    assert server.url == "http://[::1]:%d/" % server.address[1]
    with HttpClient(server.url) as client:
        assert client.hello("six") == "Hello six"


def test_url_path_and_query_are_sent(servers: Servers) -> None:
    server = servers()
    seen = []
    server.addFunction(lambda context: seen.append((context["PATH_INFO"],
                                                    context["QUERY_STRING"])), "where")
    with HttpClient(server.url + "svc/hello?x=1") as client:
        client.where()
    assert seen == [("/svc/hello", "x=1")]


def test_unknown_scheme_is_config_error() -> None:
    with pytest.raises(ConfigError, match="ftp://h/"):
        HttpTransport("ftp://h/")
    with pytest.raises(ConfigError):
        HttpTransport("http://h/", pool_size=0)


# ------------------------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_one_connection(server: HttpServer) -> None:
    with HttpClient(server.url) as client:
        ports = {client.port() for _ in range(50)}
    assert len(ports) == 1


def test_server_idle_timeout_then_next_call_succeeds(servers: Servers) -> None:
    server = servers(idle_timeout=0.2)
    with HttpClient(server.url) as client:
        first = client.port()
        time.sleep(2.0)  # the server closes the idle connection (idle 0.2 s) meanwhile
        # (0.6 s left a loaded machine 0.4 s to run the server's idle close; when it came
        # later the call reused the first connection)
        assert client.hello("again") == "Hello again"
        assert client.port() != first  # a new connection was opened


def _fake_server(script: Callable[[int, socket.socket], None]) -> tuple[str, Callable[[], None]]:
    """A raw HTTP server: ``script(connection_number, sock)`` handles each connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        count = 0
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            count += 1
            with sock:
                try:
                    script(count, sock)
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True, name="fake-http-server")
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        listener.close()

    return "http://127.0.0.1:%d/" % listener.getsockname()[1], close


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += sock.recv(65536)
    return body


def _reply(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))


def test_stale_connection_closed_as_request_arrives_is_retried_once() -> None:
    """Connection 1 answers one call, then closes when the next request arrives, as a server
    closing an idle connection does (the race the pre-reuse check cannot see)."""
    requests: list[tuple[int, bytes]] = []

    def script(number: int, sock: socket.socket) -> None:
        requests.append((number, _read_request(sock)))
        if number == 1:
            _reply(sock, b"R1z")
            _read_request(sock)  # the second request: close without answering
            return
        _reply(sock, b"R2z")

    url, close = _fake_server(script)
    try:
        with HttpTransport(url) as transport:
            assert transport.round_trip(b"Cs1\"a\"z", Deadline(5)) == b"R1z"
            assert transport.round_trip(b"Cs1\"b\"z", Deadline(5)) == b"R2z"
    finally:
        close()
    assert [number for number, _ in requests] == [1, 2]


def test_connection_closed_while_idle_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    """A server that closed an idle connection long ago: the pool notices the EOF before
    reuse, so the request goes straight to a new connection (no send-then-retry)."""
    requests: list[int] = []
    closed = threading.Event()

    def script(number: int, sock: socket.socket) -> None:
        _read_request(sock)
        requests.append(number)
        _reply(sock, b"R%dz" % number)  # keep-alive reply, then close at once
        sock.close()
        closed.set()

    url, close = _fake_server(script)
    caplog.set_level(logging.DEBUG, logger="hprose_cluster.transport.http")
    try:
        with HttpTransport(url) as transport:
            assert transport.round_trip(b"Cs1\"a\"z", Deadline(5)) == b"R1z"
            # the server closed it (a fixed sleep alone could end before a server thread
            # descheduled between its reply and its close did), and the FIN arrived
            assert closed.wait(5)
            time.sleep(0.2)
            assert transport.round_trip(b"Cs1\"b\"z", Deadline(5)) == b"R2z"
    finally:
        close()
    assert requests == [1, 2]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_fresh_connection_closed_without_reply_is_not_retried() -> None:
    attempts = []

    def script(number: int, sock: socket.socket) -> None:
        attempts.append(_read_request(sock))  # read, then close without a reply

    url, close = _fake_server(script)
    try:
        with HttpTransport(url) as transport:
            with pytest.raises(TransportError) as info:
                transport.round_trip(b"Cs1\"a\"z", Deadline(5))
    finally:
        close()
    assert info.value.sent is True and url in str(info.value)
    assert not isinstance(info.value, ConnectError)
    assert len(attempts) == 1


def test_non_200_status_is_transport_error_naming_status_and_url(servers: Servers) -> None:
    server = servers(max_body=100)
    with HttpClient(server.url) as client:
        with pytest.raises(TransportError) as info:
            client.hello("x" * 500)
        assert "413" in str(info.value) and server.url in str(info.value)
        assert client.hello("ok") == "Hello ok"  # a new connection works


def test_reply_larger_than_max_body_is_refused(server: HttpServer) -> None:
    with HttpClient(server.url, max_body=1000) as client:
        assert len(client.big(900)) == 900
        with pytest.raises(TransportError, match="max_body"):
            client.big(5000)


def test_reply_declaring_huge_body_is_refused_unread() -> None:
    def script(number: int, sock: socket.socket) -> None:
        _read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nRz")
        time.sleep(1)  # and nothing more: a client that waits for the body times out

    url, close = _fake_server(script)
    try:
        with HttpTransport(url, max_body=1000) as transport:
            with pytest.raises(TransportError) as info:
                transport.round_trip(b"z", Deadline(0.8))
    finally:
        close()
    assert not isinstance(info.value, CallTimeout)
    assert "1000000000000" in str(info.value) and url in str(info.value)


# --------------------------------------------------------------------------- threads, errors


def test_eight_threads_share_one_client(server: HttpServer) -> None:
    ports: set[str] = set()
    with HttpClient(server.url, pool_size=8) as client:
        def work(i: int) -> None:
            for j in range(30):
                assert client.sum(i, j) == i + j
                ports.add(client.port())

        errors = run_in_threads(work, 8, timeout=None)
    assert errors == []
    assert 1 <= len(ports) <= 8


def test_refused_port_is_connect_error_not_sent() -> None:
    url = "http://127.0.0.1:%d/" % free_port()
    with HttpClient(url) as client:
        with pytest.raises(ConnectError) as info:
            client.hello("nobody")
    assert info.value.sent is False
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_slow_function_is_call_timeout(servers: Servers) -> None:
    server = servers()
    with HttpClient(server.url, timeout=0.3) as client:
        # connected first: the 0.3 s must go to the call, not to opening the connection (a
        # loaded machine could spend them there, and the timeout came unsent)
        assert client.hello("warm") == "Hello warm"
        start = time.monotonic()
        with pytest.raises(CallTimeout) as info:
            client.slow(10)
        assert time.monotonic() - start < 2
        assert info.value.sent is True and server.url in str(info.value)
        servers.release.set()
        assert client.hello("after") == "Hello after"


# ------------------------------------------------------------------------------------ HTTPS


def test_https_call_with_the_right_ca(https_server: HttpServer, pki: dict[str, Path]) -> None:
    assert https_server.scheme == "https" and https_server.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with HttpClient(https_server.url, ssl_context=context) as client:
        assert client.hello("tls") == "Hello tls"
        assert len({client.port() for _ in range(10)}) == 1  # keep-alive over TLS too


def test_https_wrong_ca_is_clear_connect_error(https_server: HttpServer,
                                               pki: dict[str, Path]) -> None:
    wrong = ssl.create_default_context(cafile=str(pki["other_ca"]))
    with HttpClient(https_server.url, ssl_context=wrong) as client:
        with pytest.raises(ConnectError) as info:
            client.hello("tls")
    message = str(info.value)
    assert "certificate verification failed" in message and https_server.url in message
    assert info.value.sent is False
    # the failed handshake did not hurt the server
    right = ssl.create_default_context(cafile=str(pki["ca"]))
    with HttpClient(https_server.url, ssl_context=right) as client:
        assert client.hello("again") == "Hello again"


def test_https_default_context_uses_system_store(https_server: HttpServer) -> None:
    with HttpClient(https_server.url) as client:
        with pytest.raises(ConnectError, match="certificate verification failed"):
            client.hello("tls")


"""hprose over HTTP: HttpTransport / HttpClient against HttpServer, on real loopback sockets."""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import hprose
import pytest
from hprose.common import HproseException

from hprose_cluster.errors import CallTimeout, ConfigError, ConnectError, TransportError
from hprose_cluster.transport.http import HttpClient, HttpServer, HttpTransport

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent


def _http_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hprose-cluster-http-")]


def _service(server: HttpServer, release: threading.Event, started: threading.Event) -> None:
    def hello(name: str) -> str:
        return "Hello " + name

    def sum(a: int, b: int) -> int:  # noqa: A001 - the remote name
        return a + b

    def fail() -> None:
        raise ValueError("boom")

    def port(context: dict) -> str:
        return context["REMOTE_PORT"]

    def slow(seconds: float) -> str:
        started.set()
        release.wait(seconds)
        return "done"

    def big(n: int) -> str:
        return "x" * n

    for function in (hello, sum, fail, port, slow, big):
        server.addFunction(function)


class Servers:
    """Starts HttpServers with the test service; stops them all at teardown."""

    def __init__(self) -> None:
        self.servers: list[HttpServer] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, host: str = "127.0.0.1", **options: Any) -> HttpServer:
        server = HttpServer(host, 0, **options)
        _service(server, self.release, self.started)
        server.start(block=False)
        self.servers.append(server)
        return server

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.stop(drain_timeout=2)


@pytest.fixture
def servers() -> Iterator[Servers]:
    factory = Servers()
    try:
        yield factory
    finally:
        factory.close()
    # a connection thread that called stop() itself ends just after answering
    deadline = time.monotonic() + 2
    while _http_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _http_threads() == []


@pytest.fixture
def server(servers: Servers) -> HttpServer:
    return servers()


def _raw(server: HttpServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, stop writing, return everything until EOF."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


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
        time.sleep(0.6)  # the server closes the idle connection meanwhile
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
            assert transport.round_trip(b"Cs1\"a\"z", 5) == b"R1z"
            assert transport.round_trip(b"Cs1\"b\"z", 5) == b"R2z"
    finally:
        close()
    assert [number for number, _ in requests] == [1, 2]


def test_connection_closed_while_idle_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    """A server that closed an idle connection long ago: the pool notices the EOF before
    reuse, so the request goes straight to a new connection (no send-then-retry)."""
    requests: list[int] = []

    def script(number: int, sock: socket.socket) -> None:
        _read_request(sock)
        requests.append(number)
        _reply(sock, b"R%dz" % number)  # keep-alive reply, then close at once

    url, close = _fake_server(script)
    caplog.set_level(logging.DEBUG, logger="hprose_cluster.transport.http")
    try:
        with HttpTransport(url) as transport:
            assert transport.round_trip(b"Cs1\"a\"z", 5) == b"R1z"
            time.sleep(0.2)  # let the FIN arrive
            assert transport.round_trip(b"Cs1\"b\"z", 5) == b"R2z"
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
                transport.round_trip(b"Cs1\"a\"z", 5)
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
                transport.round_trip(b"z", 0.8)
    finally:
        close()
    assert not isinstance(info.value, CallTimeout)
    assert "1000000000000" in str(info.value) and url in str(info.value)


# --------------------------------------------------------------------------- threads, errors


def test_eight_threads_share_one_client(server: HttpServer) -> None:
    errors: list[BaseException] = []
    ports: set[str] = set()
    with HttpClient(server.url, pool_size=8) as client:
        def work(i: int) -> None:
            try:
                for j in range(30):
                    assert client.sum(i, j) == i + j
                    ports.add(client.port())
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert 1 <= len(ports) <= 8


def test_refused_port_is_connect_error_not_sent() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    url = "http://127.0.0.1:%d/" % port
    with HttpClient(url) as client:
        with pytest.raises(ConnectError) as info:
            client.hello("nobody")
    assert info.value.sent is False
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_slow_function_is_call_timeout(servers: Servers) -> None:
    server = servers()
    with HttpClient(server.url, timeout=0.3) as client:
        start = time.monotonic()
        with pytest.raises(CallTimeout) as info:
            client.slow(10)
        assert time.monotonic() - start < 2
        assert info.value.sent is True and server.url in str(info.value)
        servers.release.set()
        assert client.hello("after") == "Hello after"


# ------------------------------------------------------------------------------ stop, drain


def test_stop_drains_a_call_in_progress_and_leaves_no_thread(servers: Servers) -> None:
    server = servers()
    result: list[Any] = []
    with HttpClient(server.url) as client:
        caller = threading.Thread(target=lambda: result.append(client.slow(0.5)))
        caller.start()
        assert servers.started.wait(5)
        assert server.in_flight == 1
        server.stop(drain_timeout=5)
        caller.join(5)
        assert result == ["done"]
        assert server.in_flight == 0
        assert _http_threads() == []
        with pytest.raises(ConnectError):  # no longer accepting
            client.hello("late")
    server.stop()  # idempotent


def test_request_outliving_drain_timeout_fails_as_sent_not_retried(servers: Servers) -> None:
    """On a kept-alive connection, a silent close would look stale and be retried (and then
    reported as never sent); the server answers 503 instead."""
    server = servers()
    with HttpClient(server.url) as client:
        client.hello("warm")  # the slow call below reuses this connection
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.slow(3)
            except BaseException as error:  # checked below
                errors.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        assert servers.started.wait(5)
        server.stop(drain_timeout=0.2)
        caller.join(5)
    servers.release.set()
    assert len(errors) == 1 and type(errors[0]) is TransportError, errors
    assert errors[0].sent is True and "503" in str(errors[0])


def test_stop_closes_idle_keep_alive_connections_at_once(server: HttpServer) -> None:
    with HttpClient(server.url) as client:
        client.hello("x")  # leaves an idle keep-alive connection open on the server
        start = time.monotonic()
        server.stop(drain_timeout=5)
        assert time.monotonic() - start < 1.5
    assert _http_threads() == []


def test_stop_closes_idle_connections_while_draining(servers: Servers) -> None:
    """stop(): an idle keep-alive connection is closed at once, while a running request is
    finished and answered with "Connection: close"."""
    server = servers()

    def post(body: bytes) -> bytes:
        return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    with socket.create_connection(server.address, timeout=5) as idle, \
            socket.create_connection(server.address, timeout=5) as busy:
        idle.sendall(post(b'Cs5"hello"a1{s1"a"}z'))
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")  # now idle, kept alive
        busy.sendall(post(b'Cs4"slow"a1{5}z'))
        assert servers.started.wait(5)
        stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
        stopper.start()
        idle.settimeout(2)
        assert idle.recv(100) == b""  # closed at once, while the slow call still runs
        assert stopper.is_alive() and server.in_flight == 1
        servers.release.set()
        reply = b""
        while chunk := busy.recv(65536):
            reply += chunk
        stopper.join(5)
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b'Rs4"done"z')
    assert b"\r\nConnection: close\r\n" in reply
    assert _http_threads() == []


def test_stop_called_by_a_service_function_answers_it(servers: Servers) -> None:
    server = servers()
    server.addFunction(lambda: server.stop(drain_timeout=5) or "bye", "shutdown")
    with HttpClient(server.url) as client:
        start = time.monotonic()
        assert client.shutdown() == "bye"
        assert time.monotonic() - start < 2  # it did not wait for itself to drain
    with pytest.raises(RuntimeError, match="stopped"):
        server.start(block=False)


def test_hooks_and_listen(servers: Servers) -> None:
    calls = []

    class Hooked(HttpServer):
        def _on_listening(self) -> None:
            calls.append(("listening", self.url))

        def _before_stop(self) -> None:
            calls.append(("before_stop", self.in_flight))

    server = Hooked("127.0.0.1", 0)
    server.listen()
    server.listen()
    assert server.address[1] != 0 and server.scheme == "http"
    server.start(block=False)
    assert [t for t in _http_threads() if t.startswith("hprose-cluster-http-serve")]
    server.stop()
    server.stop()
    assert calls == [("listening", server.url), ("before_stop", 0)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_blocking_start_gracefully(signum: int) -> None:
    code = textwrap.dedent("""
        import sys
        from hprose_cluster.transport.http import HttpServer
        server = HttpServer("127.0.0.1", 0)
        server._on_listening = lambda: print(server.url, flush=True)
        server.start()
        print("returned", server.in_flight, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=5) as response:  # it serves
            assert response.read() == b"Fa{}z"
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "returned 0"
    assert "Traceback" not in err


# ------------------------------------------------------------------------- malformed requests


def test_oversized_content_length_gets_413_without_reading_body(servers: Servers) -> None:
    server = servers(max_body=1000)
    # No body is sent: if the server tried to read (or allocate) it, no reply would come.
    reply = _raw(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in reply
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"411"),
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nzzzz", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"1\r\nz\r\n0\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", b"501"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nz\r\n0\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nzz\r\n0\r\n\r\n", b"400"),
    (b"this is not http\r\n\r\n", b"400"),
    (b"GET /\r\n", b"400"),
    (b"POST / HTTP/9.9\r\nContent-Length: 1\r\n\r\nz", b"505"),
    (b"BREW / HTTP/1.1\r\n\r\n", b"501"),
])
def test_malformed_requests_get_4xx_and_server_keeps_serving(
        server: HttpServer, request_bytes: bytes, status: bytes) -> None:
    reply = _raw(server, request_bytes)
    assert reply.split(b" ", 2)[1] == status, reply
    with HttpClient(server.url) as client:
        assert client.hello("still") == "Hello still"


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` as chunks of ``sizes`` (the rest in one more chunk), with an extension and a
    trailer to skip."""
    out, start = [], 0
    for size in sizes + [len(body)]:
        piece = body[start:start + size]
        start += len(piece)
        if piece:
            out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
    return b"".join(out) + b"0\r\nX-Trailer: 1\r\n\r\n"


def test_a_chunked_body_is_read_and_the_connection_kept(server: HttpServer) -> None:
    body = b'Cs5"hello"a1{s1"a"}z'
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + _chunked(body, [3, 1, 7]))
    plain = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply = _raw(server, chunked + plain)  # two requests on one connection
    assert reply.count(b"HTTP/1.1 200 OK") == 2, reply
    assert reply.count(b'Rs7"Hello a"z') == 2, reply


def test_a_chunked_body_over_max_body_gets_413_before_it_is_all_read(servers: Servers) -> None:
    server = servers(max_body=1000)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # 600 + 600 bytes: the second chunk size line alone is enough to refuse
    reply = _raw(server, head + b"258\r\n" + b"x" * 600 + b"\r\n258\r\n")
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:100]
    with HttpClient(server.url) as client:
        assert client.hello("still") == "Hello still"


def test_raw_keep_alive_pipeline_gets_two_answers(server: HttpServer) -> None:
    body = b'Cs5"hello"a1{s1"a"}z'
    one = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply = _raw(server, one + one)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.count(b'Rs7"Hello a"z') == 2


# ------------------------------------------------------------------------------------ HTTPS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA with a server certificate for the loopback names, and an unrelated CA."""
    from certs import CertificateAuthority

    tmp = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(tmp / "ca")
    server = ca.issue("server", "localhost", server=True, client=False)
    other = CertificateAuthority(tmp / "other", "some other CA")
    return {"ca": ca.ca_file, "other_ca": other.ca_file, "cert": server.cert, "key": server.key}


@pytest.fixture
def https_server(servers: Servers, pki: dict[str, Path]) -> HttpServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    return servers(ssl_context=context)


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

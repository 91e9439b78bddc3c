"""Messages that say what happened: no TLS hint for an endpoint that is not etcd or an etcd
that stopped, no "removed" without a removal, one line per watch warning, a fast and plain
error for a tcp4:// record of an HTTP server, bad JSON arguments named, valid JSON only, and
endpoints shown with their scheme."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Iterator

import pytest

from hprose_cluster import Registrar, ServerInfo
from hprose_cluster.demo import make_server
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.transport.tcp import TcpServer
from tests.support.cli import Lines, run, unique

pytestmark = pytest.mark.timeout(180)


class _Closer:
    """Not etcd: reads what the client sends, then closes the connection (FIN)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(2)
                conn.recv(1024)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def closer() -> Iterator[_Closer]:
    server = _Closer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def http_server(etcd) -> Iterator:
    server = make_server("http", unique("http"), etcd=etcd.endpoint, ttl=2, heartbeat=0.5)
    server.drain_delay = 0
    server.start(block=False)
    try:
        yield server
    finally:
        server.stop()


def _one_error_line(result) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_endpoint_that_is_not_etcd_is_not_called_a_tls_mismatch(closer, http_server):
    for port in (closer.port, http_server.address[1]):
        endpoint = "127.0.0.1:%d" % port
        line = _one_error_line(run(endpoint, "--timeout", "3", "ls"))
        assert endpoint in line
        assert "TLS" not in line and "plaintext" not in line, line
        assert "not an etcd server" in line, line


def test_plaintext_to_a_tls_etcd_says_to_use_https(etcd_factory, tmp_path):
    from tests.support.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    server = etcd_factory(scheme="https", extra_args=["--cert-file", str(pki.server.cert),
                                                      "--key-file", str(pki.server.key)])
    line = _one_error_line(run(server.endpoint, "--timeout", "3", "ls"))
    assert "https://%s" % server.endpoint in line and "plaintext" in line, line


def test_a_watch_of_an_etcd_that_stops_warns_in_one_line_each(etcd_factory):
    server = etcd_factory()
    domain = unique("gone")
    watcher = Lines(server.endpoint, "watch", domain)
    try:
        with EtcdConnection(EtcdConfig(server.endpoint, timeout=3)) as connection:
            for uuid in ("u1", "u2"):  # u2 is seen through the watch: it is live
                connection.put("hprose-service/%s/%s" % (domain, uuid), json.dumps(
                    {"UUID": uuid, "Domain": domain, "ServerUrl": "tcp://h:1",
                     "CPU": 1}).encode())
                watcher.wait_for(lambda line: uuid in line)
        server.stop()
        watcher.wait_for_error(lambda line: "retrying" in line, 30)
        assert watcher.stop(signal.SIGINT) == 0
        errors = watcher.stderr().splitlines()
        assert errors, "no warning at all"
        for line in errors:
            assert line.startswith("hprose-cluster: "), errors  # no continuation lines
            assert "Rendezvous" not in line and "retrying in 0.0 s" not in line, line
            assert "TLS" not in line, line
    finally:
        watcher.close()


def test_register_does_not_claim_a_removal_it_could_not_make(etcd_factory):
    server = etcd_factory()
    domain = unique("plain")
    # --timeout 3 (was 1): the first registration on a just-started etcd (a new process:
    # channel, grant, put) may take over 1 s on a loaded machine, and register then exits;
    # the revoke below meets a stopped etcd, refused at once whatever the timeout
    registered = Lines(server.endpoint, "--timeout", "3", "register", domain,
                       "tcp4://127.0.0.1:%d" % free_port(), "--ttl", "5", "--heartbeat", "1")
    try:
        key = registered.wait_for(lambda line: True)
        server.stop()  # etcd gone: the lease cannot be revoked
        assert registered.stop(signal.SIGINT, 60) == 1
        errors = registered.stderr()
        assert "removed" not in errors, errors
        assert "could not remove %s" % key in errors and "expires within 5 s" in errors, errors
    finally:
        registered.close()


def test_a_tcp_record_of_an_http_server_fails_fast_and_says_so(etcd, http_server):
    domain = unique("mixed")
    port = http_server.address[1]
    with Registrar(ServerInfo(domain, "tcp4://127.0.0.1:%d" % port), etcd=etcd.endpoint,
                   ttl=2, heartbeat=0.5):
        started = time.monotonic()
        result = run(etcd.endpoint, "call", domain, "hello", "x", "--timeout", "30")
        elapsed = time.monotonic() - started
    line = _one_error_line(result)
    assert "not speaking hprose TCP" in line and "127.0.0.1:%d" % port in line, line
    assert elapsed < 15, elapsed  # an answer, not the 30 s timeout


@pytest.fixture
def odd_server(etcd) -> Iterator[str]:
    """A server whose results are floats JSON has no words for."""
    domain = unique("odd")
    server = make_server("tcp", domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5)
    server.addFunction(lambda: float("inf"), "infinity")
    server.addFunction(lambda: [1.5, float("-inf"), {"x": float("nan")}], "odd")
    server.drain_delay = 0
    server.start(block=False)
    try:
        yield domain
    finally:
        server.stop()


def _strict(text: str):
    def refuse(constant: str):
        raise AssertionError("not JSON: %s" % constant)
    return json.loads(text, parse_constant=refuse)


def test_json_output_is_always_valid_json(etcd, odd_server):
    result = run(etcd.endpoint, "call", odd_server, "infinity", "--json")
    assert result.returncode == 0, result.stderr
    assert _strict(result.stdout) == "Infinity"
    result = run(etcd.endpoint, "call", odd_server, "odd", "--json")
    assert result.returncode == 0, result.stderr
    assert _strict(result.stdout) == [1.5, "-Infinity", {"x": "NaN"}]


def test_malformed_json_arguments_are_refused_or_flagged(cluster, etcd):
    for text in ("[1,2", '{"a":', '"unterminated'):
        result = run(etcd.endpoint, "call", cluster["tcp"], "hello", text)
        assert result.returncode == 2, (text, result)
        assert repr(text) in result.stderr and "not valid JSON" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # Looks like a number, is not one: sent as the text, with a warning saying so.
    result = run(etcd.endpoint, "call", cluster["tcp"], "hello", "1.2.3")
    assert (result.returncode, result.stdout) == (0, "Hello 1.2.3\n")
    assert "warning" in result.stderr and "'1.2.3'" in result.stderr and "string" in result.stderr
    # Plain words stay quiet strings.
    result = run(etcd.endpoint, "call", cluster["tcp"], "hello", "world")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Hello world\n", "")


def test_an_https_endpoint_is_reported_with_its_scheme():
    endpoint = "https://127.0.0.1:%d" % free_port()
    line = _one_error_line(run(None, "--etcd", endpoint, "--timeout", "2", "ls"))
    assert endpoint in line, line

"""etcd with TLS, client certificates and auth: real etcd servers configured by the tests.

Certificates come from ``tests/support/certs.py`` (a fresh CA per test, in ``tmp_path``); users and
roles are created with ``etcdctl``: ``root``; ``svc``, read-write on ``hprose-service/`` only;
``reader``, read-only on ``hprose-service/``.  Every failure case checks three things: the
error type, that the message names the endpoint and the cause, and that it came within the
configured timeout leaving no thread behind.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support.certs import Pki, make_pki
from hprose_cluster import (ClusterClient, Discovery, EtcdConfig, EtcdError, Registrar,
                            RegistrationError, ServerInfo)
from hprose_cluster.demo import make_server
from hprose_cluster.embedded import EmbeddedEtcd, find_etcdctl_binary
from hprose_cluster.etcd import EtcdConnection

TIMEOUT = 5.0  # etcd request timeout in these tests: every failure must come within it
SHORT = 1.5    # for the endpoints that never answer

PASSWORDS = {"root": "root-pw", "svc": "svc-pw", "reader": "reader-pw"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _tls_args(pki: Pki, client_cert_auth: bool = False) -> list[str]:
    args = ["--cert-file", str(pki.server.cert), "--key-file", str(pki.server.key)]
    if client_cert_auth:
        args += ["--client-cert-auth", "--trusted-ca-file", str(pki.ca)]
    return args


def etcdctl(server: EmbeddedEtcd, *args: str, pki: Pki | None = None, user: str | None = None) -> str:
    command = [find_etcdctl_binary(), "--endpoints", server.client_url, "--dial-timeout", "3s",
               "--command-timeout", "5s"]
    if pki is not None:
        command += ["--cacert", str(pki.ca), "--cert", str(pki.client.cert),
                    "--key", str(pki.client.key)]
    if user is not None:
        command += ["--user", "%s:%s" % (user, PASSWORDS[user])]
    done = subprocess.run(command + list(args), capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def enable_auth(server: EmbeddedEtcd, pki: Pki | None = None) -> None:
    """root; svc read-write on hprose-service/; reader read-only on hprose-service/."""
    for user, password in PASSWORDS.items():
        etcdctl(server, "user", "add", user, "--new-user-password", password, pki=pki)
    etcdctl(server, "role", "add", "service", pki=pki)
    etcdctl(server, "role", "grant-permission", "service", "readwrite", "hprose-service/",
            "--prefix=true", pki=pki)
    etcdctl(server, "role", "add", "reader", pki=pki)
    etcdctl(server, "role", "grant-permission", "reader", "read", "hprose-service/",
            "--prefix=true", pki=pki)
    etcdctl(server, "user", "grant-role", "svc", "service", pki=pki)
    etcdctl(server, "user", "grant-role", "reader", "reader", pki=pki)
    etcdctl(server, "auth", "enable", pki=pki)


def as_user(server: EmbeddedEtcd, user: str | None, **tls: Any) -> EtcdConfig:
    endpoint = server.client_url if server.scheme == "https" else server.endpoint
    return EtcdConfig(endpoint, user=user, password=PASSWORDS.get(user or ""), timeout=TIMEOUT,
                      **tls)


def start_server(domain: str, etcd: EtcdConfig, transport: str = "tcp", **options: Any) -> Any:
    server = make_server(transport, domain, etcd=etcd, ttl=2, heartbeat=0.5, drain_delay=0.0,
                         **options)
    server.start(block=False)
    # Its first lease refresh opens the keepalive stream and the watch of its key, on the
    # process's shared connection: done before a test counts the threads a failed start
    # leaves, so these are not counted (a server's own threads, made a heartbeat later).
    deadline = time.monotonic() + 10
    while server.registrar.refreshes < 1:
        assert time.monotonic() < deadline, "the server's lease was never refreshed"
        time.sleep(0.05)
    return server


def wait_threads_back(before: set[threading.Thread], timeout: float = 3.0) -> set[threading.Thread]:
    """Threads started since ``before`` that are still alive after ``timeout`` (should be none).
    etcd3's watcher thread ends a moment after its stream is closed, hence the short wait."""
    deadline = time.monotonic() + timeout
    while True:
        extra = {t for t in threading.enumerate() if t not in before and t.is_alive()}
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


def fails_fast(make: Callable[[], Any], error_type: type[Exception]) -> tuple[Exception, float]:
    """Run ``make`` (which must raise ``error_type``); the error, and how long it took.
    Anything it returned by mistake is closed."""
    before = set(threading.enumerate())
    started = time.monotonic()
    with pytest.raises(error_type) as caught:
        made = make()
        for close in ("close", "stop"):
            if hasattr(made, close):
                getattr(made, close)()
                break
    elapsed = time.monotonic() - started
    assert wait_threads_back(before) == set()
    return caught.value, elapsed


# --------------------------------------------------------------------------- TLS


@pytest.mark.timeout(60)
def test_server_tls_register_discover_and_call(etcd_factory, pki, domain) -> None:
    server_etcd = etcd_factory(scheme="https", extra_args=_tls_args(pki))
    config = EtcdConfig(server_etcd.client_url, ca_file=str(pki.ca), timeout=TIMEOUT)
    assert config.tls
    server = start_server(domain, config)
    try:
        with ClusterClient(domain, etcd=config) as client:
            assert client.hello("tls") == "Hello tls"
            assert [s.uuid for s in client.servers()] == [server.uuid]
    finally:
        server.stop(drain_timeout=1)

    # A CA that did not sign the server certificate: a clear, immediate refusal.
    other = make_pki(pki.ca.parent / "other")
    wrong = EtcdConfig(server_etcd.client_url, ca_file=str(other.ca), timeout=TIMEOUT)
    error, elapsed = fails_fast(lambda: ClusterClient(domain, etcd=wrong), EtcdError)
    message = str(error)
    assert "certificate verification failed" in message and server_etcd.endpoint in message
    assert elapsed < TIMEOUT + 1
    error, elapsed = fails_fast(lambda: start_server(domain, wrong), RegistrationError)
    assert "certificate verification failed" in str(error) and server_etcd.endpoint in str(error)
    assert elapsed < TIMEOUT + 1

    # Plaintext against the TLS port: named as a TLS/plaintext mismatch.
    plain = EtcdConfig(server_etcd.endpoint, timeout=TIMEOUT)
    error, elapsed = fails_fast(lambda: Discovery(domain, etcd=plain).start(), EtcdError)
    assert "plaintext" in str(error) and server_etcd.endpoint in str(error)
    assert elapsed < TIMEOUT + 1


@pytest.mark.timeout(60)
def test_mutual_tls_register_discover_and_call(etcd_factory, pki, domain, monkeypatch) -> None:
    server_etcd = etcd_factory(scheme="https", extra_args=_tls_args(pki, client_cert_auth=True))
    config = EtcdConfig(server_etcd.client_url, ca_file=str(pki.ca), cert_file=str(pki.client.cert),
                        key_file=str(pki.client.key), timeout=TIMEOUT)
    server = start_server(domain, config, "http")
    try:
        with ClusterClient(domain, etcd=config) as client:
            assert client.hello("mtls") == "Hello mtls"

        # The same settings from the environment, as a deployment would give them.
        monkeypatch.setenv("HPROSE_CLUSTER_ETCD", server_etcd.client_url)
        monkeypatch.setenv("HPROSE_CLUSTER_ETCD_CA", str(pki.ca))
        monkeypatch.setenv("HPROSE_CLUSTER_ETCD_CERT", str(pki.client.cert))
        monkeypatch.setenv("HPROSE_CLUSTER_ETCD_KEY", str(pki.client.key))
        second = start_server(domain, None, "tcp")
        try:
            with ClusterClient(domain) as client:
                assert client.discovery.wait_for_servers(timeout=5, count=2)
                assert {s.uuid for s in client.servers()} == {server.uuid, second.uuid}
        finally:
            second.stop(drain_timeout=1)
    finally:
        server.stop(drain_timeout=1)

    # No client certificate, or one from another CA: refused, and said so.
    other = make_pki(pki.ca.parent / "other")
    for tls in ({"ca_file": str(pki.ca)},
                {"ca_file": str(pki.ca), "cert_file": str(other.client.cert),
                 "key_file": str(other.client.key)}):
        bad = EtcdConfig(server_etcd.client_url, timeout=TIMEOUT, **tls)
        error, elapsed = fails_fast(lambda: ClusterClient(domain, etcd=bad), EtcdError)
        assert "client certificate" in str(error) and server_etcd.endpoint in str(error)
        assert elapsed < TIMEOUT + 1


def test_unreachable_and_silent_endpoints_fail_within_the_timeout(domain) -> None:
    import socket

    silent = socket.socket()  # accepts TCP connections, never speaks HTTP/2
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for endpoint, causes in (("127.0.0.1:1", ("Connection refused",)),
                                 ("127.0.0.1:%d" % silent.getsockname()[1],
                                  ("timeout", "timed out"))):
            for user in (None, "svc"):
                config = EtcdConfig(endpoint, timeout=SHORT, user=user,
                                    password="pw" if user else None)
                error, elapsed = fails_fast(lambda: ClusterClient(domain, etcd=config), EtcdError)
                assert endpoint in str(error) and any(c in str(error) for c in causes), str(error)
                assert elapsed < SHORT + 1
                info = ServerInfo(domain, "tcp://127.0.0.1:9")
                error, elapsed = fails_fast(lambda: Registrar(info, etcd=config).start(),
                                            RegistrationError)
                assert endpoint in str(error) and any(c in str(error) for c in causes), str(error)
                assert elapsed < SHORT + 1
    finally:
        silent.close()


# --------------------------------------------------------------------------- auth


@pytest.mark.timeout(90)
def test_auth_roles_on_plaintext(etcd_factory, domain) -> None:
    server_etcd = etcd_factory()
    enable_auth(server_etcd)
    svc, reader = as_user(server_etcd, "svc"), as_user(server_etcd, "reader")

    server = start_server(domain, svc)
    try:
        # The server's keepalive stream (one thread) opens with its first refresh: wait for
        # it, so the thread checks below only see threads of what they create.
        deadline = time.monotonic() + 5
        while server.registrar.refreshes < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        with ClusterClient(domain, etcd=svc) as client:
            assert client.hello("svc") == "Hello svc"
        with ClusterClient(domain, etcd=reader) as client:
            assert client.hello("reader") == "Hello reader"
            assert [s.uuid for s in client.servers()] == [server.uuid]

        # The reader may look, not register.
        info = ServerInfo(domain, "tcp://127.0.0.1:9", uuid="reader-server")
        error, elapsed = fails_fast(lambda: Registrar(info, etcd=reader, ttl=2, heartbeat=0.5)
                                    .start(), RegistrationError)
        message = str(error)
        assert "permission denied" in message and "'reader'" in message
        assert domain in message and server_etcd.endpoint in message
        with EtcdConnection(svc) as connection:
            assert not connection.get(info.key()).kvs  # nothing half-written

            # svc is confined to its prefix: no read, no write elsewhere.
            for attempt in (lambda: connection.put("elsewhere/x", b"1"),
                            lambda: connection.get("elsewhere/x"),
                            lambda: connection.get_prefix("hprose-servic")):
                with pytest.raises(EtcdError, match="permission denied.*'svc'"):
                    attempt()

        # Wrong password, unknown user: fast, clear, nothing left running.
        for user, password in (("svc", "wrong"), ("nobody", "x")):
            bad = EtcdConfig(server_etcd.endpoint, user=user, password=password, timeout=TIMEOUT)
            for make, error_type in ((lambda: ClusterClient(domain, etcd=bad), EtcdError),
                                     (lambda: start_server(domain, bad), RegistrationError)):
                error, elapsed = fails_fast(make, error_type)
                message = str(error)
                assert "authentication failed" in message and repr(user) in message
                assert server_etcd.endpoint in message
                assert elapsed < TIMEOUT + 1
    finally:
        server.stop(drain_timeout=1)


@pytest.mark.timeout(90)
def test_auth_over_mutual_tls(etcd_factory, pki, domain) -> None:
    server_etcd = etcd_factory(scheme="https", extra_args=_tls_args(pki, client_cert_auth=True))
    enable_auth(server_etcd, pki=pki)
    tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client.cert),
           "key_file": str(pki.client.key)}
    svc, reader = as_user(server_etcd, "svc", **tls), as_user(server_etcd, "reader", **tls)
    server = start_server(domain, svc, "http")
    try:
        with ClusterClient(domain, etcd=reader) as client:
            assert client.hello("both") == "Hello both"
        info = ServerInfo(domain, "tcp://127.0.0.1:9")
        error, _ = fails_fast(lambda: Registrar(info, etcd=reader).start(), RegistrationError)
        assert "permission denied" in str(error)
    finally:
        server.stop(drain_timeout=1)


@pytest.mark.timeout(120)
def test_expired_tokens_and_an_etcd_restart_go_unnoticed(etcd_factory, domain) -> None:
    """Simple tokens live 2 s idle and die with the server.  A svc server stays registered, a
    reader's watch goes on, and servers registered after expiry and after a restart are seen
    through the watch (the periodic check is set too slow to be what finds them)."""
    server_etcd = etcd_factory(extra_args=["--auth-token", "simple", "--auth-token-ttl", "2"])
    enable_auth(server_etcd)
    svc, reader = as_user(server_etcd, "svc"), as_user(server_etcd, "reader")

    first = start_server(domain, svc)
    late_servers: list[Any] = []
    try:
        with ClusterClient(domain, etcd=reader, check_interval=60) as client:
            discovery = client.discovery
            assert client.hello("a") == "Hello a"

            time.sleep(3.5)  # every token is now expired (2 s TTL, the reader was idle)
            after_expiry = start_server(domain, svc)
            late_servers.append(after_expiry)
            assert discovery.wait_for(lambda view: after_expiry.uuid in view, timeout=5)

            server_etcd.restart()  # tokens are gone with the old process
            time.sleep(3.5)
            after_restart = start_server(domain, svc)
            late_servers.append(after_restart)
            assert discovery.wait_for(lambda view: after_restart.uuid in view, timeout=8)

            # The first server never left: its registrar kept (or renewed) its lease.
            assert first.registrar is not None and first.registrar.registered
            with EtcdConnection(reader) as connection:
                assert connection.get(first.info.key()).kvs
            assert {s.uuid for s in client.servers()} == \
                {first.uuid, after_expiry.uuid, after_restart.uuid}
            assert client.hello("b") == "Hello b"

            # A server that leaves is seen leaving too.
            after_expiry.stop(drain_timeout=1)
            assert discovery.wait_for(lambda view: after_expiry.uuid not in view, timeout=5)
    finally:
        for server in [first] + late_servers:
            server.stop(drain_timeout=1)

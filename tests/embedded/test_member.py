"""EmbeddedEtcd, one real etcd server: start, stop, kill, pause, restart, wipe, https."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import etcd3
import grpc
import pytest

from hprose_cluster import embedded
from hprose_cluster.embedded import EmbeddedEtcd
from hprose_cluster.errors import EtcdError

from tests.support.certs import make_pki
from tests.support.embedded import eventually, process_alive

# --------------------------------------------------------------------------- start errors


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    server = EmbeddedEtcd(tmp_path / "data", extra_args=["--no-such-flag"])
    started = time.monotonic()
    with pytest.raises(EtcdError, match="exited during start") as info:
        server.start(timeout=10)
    assert time.monotonic() - started < 5
    assert "no-such-flag" in str(info.value)  # etcd's own complaint, from the log
    assert not server.running
    server.close()


# --------------------------------------------------------------------------- one server


def test_start_put_get_stop(client_for: Callable[..., etcd3.MultiEndpointEtcd3Client]) -> None:
    with EmbeddedEtcd() as server:
        assert server.running and server.pid is not None
        assert server.endpoint == f"127.0.0.1:{server.client_port}"
        assert server.client_url == f"http://127.0.0.1:{server.client_port}"
        assert server.peer_url == f"http://127.0.0.1:{server.peer_port}"
        assert server.client_port != server.peer_port
        assert server.check_health() == (True, "")
        client = client_for(server.endpoint)
        client.put("/k", b"v")
        assert client.get("/k")[0] == b"v"
        log_text = server.log_path.read_text()
        assert "--election-timeout 100" in log_text  # fast=True, and the output went to the log
        pid = server.pid
        server.stop()
        assert not server.running
        assert not process_alive(pid)
        assert server.check_health()[0] is False


def test_close_leaves_no_process_and_no_temp_dir() -> None:
    server = EmbeddedEtcd().start()
    pid = server.pid
    folder = server.data_dir.parent
    assert pid is not None and process_alive(pid) and folder.is_dir()
    server.close()
    assert not process_alive(pid)
    assert not folder.exists()
    assert server not in embedded.live_instances()
    with pytest.raises(EtcdError, match="closed"):
        server.start()


def test_user_data_dir_is_kept(tmp_path: Path) -> None:
    server = EmbeddedEtcd(tmp_path / "data").start()
    server.close()
    assert (tmp_path / "data" / "member").is_dir()
    assert server.log_path.parent == tmp_path


def test_kill_and_restart_keeps_data_and_ports(client_for: Callable[..., etcd3.MultiEndpointEtcd3Client], etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    server = etcd_factory()
    endpoint, old_pid = server.endpoint, server.pid
    client = client_for(endpoint)
    client.put("/kept", b"yes")
    server.kill()
    assert not server.running and not process_alive(old_pid)
    server.start()
    assert server.endpoint == endpoint and server.pid != old_pid
    assert eventually(lambda: client.get("/kept")[0]) == b"yes"
    server.restart()
    assert eventually(lambda: client.get("/kept")[0]) == b"yes"


def test_restart_wipe_loses_data_and_changes_cluster_id(client_for: Callable[..., etcd3.MultiEndpointEtcd3Client], etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    server = etcd_factory()
    client = client_for(server.endpoint)
    for i in range(20):
        client.put("/wiped", str(i).encode())
    before = client.get_response("/wiped").header
    assert before.revision >= 21
    server.restart(wipe=True)
    after = eventually(lambda: client.get_response("/wiped"))
    assert after.count == 0
    assert after.header.cluster_id != before.cluster_id
    assert after.header.revision < before.revision
    assert server.status()["header"]["cluster_id"] == str(after.header.cluster_id)


def test_pause_and_resume(client_for: Callable[..., etcd3.MultiEndpointEtcd3Client], etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    server = etcd_factory()
    client = client_for(server.endpoint, timeout=0.5)
    # the first request also opens the channel to a just-started etcd: on a loaded machine
    # that can take longer than the 0.5 s meant for the paused read below, so it is retried
    eventually(lambda: client.put("/p", b"1"), timeout=10)
    server.pause()
    try:
        assert server.paused and server.running
        started = time.monotonic()
        with pytest.raises(Exception):
            client.get("/p")
        assert time.monotonic() - started < 3
        assert server.check_health(timeout=0.3)[0] is False
    finally:
        server.resume()
    assert not server.paused
    assert eventually(lambda: client.get("/p")[0], timeout=5) == b"1"


def test_stop_a_paused_server() -> None:
    server = EmbeddedEtcd().start()
    pid = server.pid
    server.pause()
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 5  # SIGTERM was acted on, not left to the SIGKILL fallback
    assert not process_alive(pid)


def test_start_twice_is_an_error(etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    server = etcd_factory()
    with pytest.raises(EtcdError, match="already running"):
        server.start()


# --------------------------------------------------------------------------- https


def test_https_with_client_cert_auth(tmp_path: Path, etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    pki = make_pki(tmp_path / "pki")
    server = etcd_factory(
        data_dir=tmp_path / "data",
        scheme="https",
        extra_args=[
            "--cert-file", str(pki.server.cert), "--key-file", str(pki.server.key),
            "--trusted-ca-file", str(pki.ca), "--client-cert-auth",
        ],
    )
    assert server.client_url.startswith("https://")
    assert server.check_health() == (True, "")
    assert server.status()["version"]
    client = etcd3.MultiEndpointEtcd3Client(
        [etcd3.Endpoint("127.0.0.1", server.client_port, secure=True, time_retry=1.0,
                        creds=grpc.ssl_channel_credentials(
                            pki.ca.read_bytes(), pki.client.key.read_bytes(),
                            pki.client.cert.read_bytes()))],
        failover=True, timeout=5,
    )
    try:
        client.put("/tls", b"ok")
        assert client.get("/tls")[0] == b"ok"
    finally:
        client.close()

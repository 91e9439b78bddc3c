"""EmbeddedEtcd and EtcdCluster against real etcd processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import etcd3
import grpc
import pytest

from hprose_cluster import embedded
from hprose_cluster.embedded import binary
from hprose_cluster.embedded import EmbeddedEtcd, EtcdCluster, find_etcd_binary
from hprose_cluster.errors import EtcdError

T = TypeVar("T")


def make_client(*endpoints: str, timeout: float = 5) -> etcd3.MultiEndpointEtcd3Client:
    """The client construction ETCD.md prescribes (a failed endpoint is retried after 1 s)."""
    eps = []
    for endpoint in endpoints:
        host, port = endpoint.rsplit(":", 1)
        eps.append(etcd3.Endpoint(host, int(port), secure=False, time_retry=1.0))
    return etcd3.MultiEndpointEtcd3Client(eps, failover=True, timeout=timeout)


@pytest.fixture
def client_for() -> Iterator[Callable[..., etcd3.MultiEndpointEtcd3Client]]:
    clients: list[etcd3.MultiEndpointEtcd3Client] = []

    def make(*endpoints: str, timeout: float = 5) -> etcd3.MultiEndpointEtcd3Client:
        client = make_client(*endpoints, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def eventually(fn: Callable[[], T], timeout: float = 10, interval: float = 0.1) -> T:
    """fn() once it stops raising; its last exception after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (checked in /proc, no psutil)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- binary


def test_find_etcd_binary_is_executable() -> None:
    path = find_etcd_binary()
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    assert "etcd Version" in out.stdout


def test_no_binary_anywhere_gives_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(binary.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(binary, "_SYSTEM_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EtcdError) as info:
        find_etcd_binary()
    message = str(info.value)
    assert "hprose-cluster[embedded]" in message and "etcd-server" in message


def test_missing_binary_path_gives_clear_error(tmp_path: Path) -> None:
    server = EmbeddedEtcd(tmp_path / "data", binary=str(tmp_path / "no-such-etcd"))
    with pytest.raises(EtcdError, match="no-such-etcd.*hprose-cluster\\[embedded\\]"):
        server.start()
    assert not server.running
    server.close()


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
    client.put("/p", b"1")
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


def test_server_started_from_a_thread_outlives_the_thread() -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits: children must be forked from our
    long-lived spawner thread, not from the caller's."""
    server = EmbeddedEtcd()
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        assert server.running
        time.sleep(0.3)
        assert server.running and server.check_health()[0]
    finally:
        server.close()


def test_killed_parent_takes_etcd_down(tmp_path: Path) -> None:
    """A SIGKILLed Python process runs no atexit: PR_SET_PDEATHSIG must take etcd down."""
    script = (
        "import sys, time\n"
        "from hprose_cluster.embedded import EmbeddedEtcd\n"
        f"e = EmbeddedEtcd({str(tmp_path / 'data')!r}).start()\n"
        "print(e.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parent.parent))
    etcd_pid = 0
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"child did not start etcd: {line!r}"
        etcd_pid = int(line)
        assert process_alive(etcd_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_dead(etcd_pid, 5), f"etcd {etcd_pid} survived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout:
            parent.stdout.close()
        if etcd_pid and process_alive(etcd_pid):  # the test failed: do not leave it running
            os.kill(etcd_pid, signal.SIGKILL)


def test_normal_exit_stops_etcd(tmp_path: Path) -> None:
    """A script that never closes its etcd leaves none behind when it exits (atexit hook,
    with PR_SET_PDEATHSIG as the backstop)."""
    script = (
        "from hprose_cluster.embedded import EmbeddedEtcd\n"
        f"e = EmbeddedEtcd({str(tmp_path / 'data')!r}).start()\n"
        "print(e.pid, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    etcd_pid = int(out.stdout.strip())
    if not wait_dead(etcd_pid, 5):
        os.kill(etcd_pid, signal.SIGKILL)
        pytest.fail(f"etcd {etcd_pid} survived the exit of the script that started it")


# --------------------------------------------------------------------------- fixtures


def test_session_etcd_fixture(etcd: EmbeddedEtcd, domain: str, client_for: Callable[..., etcd3.MultiEndpointEtcd3Client]) -> None:
    assert etcd.running
    assert domain.startswith("t") and domain.endswith(".svc")
    client = client_for(etcd.endpoint)
    client.put(f"hprose-service/{domain}/x", b"1")
    assert client.get(f"hprose-service/{domain}/x")[0] == b"1"


def test_domain_fixture_is_unique(domain: str, request: pytest.FixtureRequest) -> None:
    other = request.getfixturevalue("domain")
    assert other == domain  # one value per test...
    assert domain not in _seen_domains  # ...and a new one for every test
    _seen_domains.add(domain)


_seen_domains: set[str] = set()


def test_domain_fixture_is_unique_again(domain: str) -> None:
    assert domain not in _seen_domains
    _seen_domains.add(domain)


# --------------------------------------------------------------------------- cluster


def test_cluster_survives_leader_kill(etcd_cluster: EtcdCluster, client_for: Callable[..., etcd3.MultiEndpointEtcd3Client]) -> None:
    assert len(etcd_cluster.members) == 3
    assert len(set(etcd_cluster.endpoints)) == 3
    ids = {m.status()["header"]["cluster_id"] for m in etcd_cluster.members}
    assert len(ids) == 1, "the members formed more than one cluster"
    client = client_for(*etcd_cluster.endpoints, timeout=2)
    client.put("/before", b"1")
    leader = etcd_cluster.leader_index()
    etcd_cluster.kill(leader)
    assert not etcd_cluster.members[leader].running
    new_leader = etcd_cluster.leader_index(timeout=5)
    assert new_leader != leader
    eventually(lambda: client.put("/after", b"2"), timeout=5)
    assert eventually(lambda: client.get("/before")[0], timeout=5) == b"1"
    assert eventually(lambda: client.get("/after")[0], timeout=5) == b"2"

    # the killed member rejoins with its data dir and catches up
    member = etcd_cluster.restart(leader)
    assert member.running
    only_it = client_for(member.endpoint)
    assert eventually(lambda: only_it.get("/after")[0], timeout=5) == b"2"
    assert member.status()["header"]["cluster_id"] in ids


def test_cluster_close_leaves_nothing(tmp_path: Path) -> None:
    cluster = EtcdCluster(3, base_dir=tmp_path)
    with cluster:
        pids = [m.pid for m in cluster.members]
        assert all(p is not None and process_alive(p) for p in pids)
    assert not any(process_alive(p) for p in pids if p is not None)
    assert (tmp_path / "m0" / "etcd.log").is_file()


# --------------------------------------------------------------------------- TLS


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (server and client use) and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_with_client_cert_auth(tmp_path: Path, etcd_factory: Callable[..., EmbeddedEtcd]) -> None:
    cert, key = _self_signed(tmp_path)
    server = etcd_factory(
        data_dir=tmp_path / "data",
        scheme="https",
        extra_args=[
            "--cert-file", str(cert), "--key-file", str(key),
            "--trusted-ca-file", str(cert), "--client-cert-auth",
        ],
    )
    assert server.client_url.startswith("https://")
    assert server.check_health() == (True, "")
    assert server.status()["version"]
    client = etcd3.MultiEndpointEtcd3Client(
        [etcd3.Endpoint("127.0.0.1", server.client_port, secure=True, time_retry=1.0,
                        creds=grpc.ssl_channel_credentials(
                            cert.read_bytes(), key.read_bytes(), cert.read_bytes()))],
        failover=True, timeout=5,
    )
    try:
        client.put("/tls", b"ok")
        assert client.get("/tls")[0] == b"ok"
    finally:
        client.close()

"""gunicorn with the hprose-cluster hooks: real gunicorn processes serving a real
hprose.HproseHttpService WSGI app, a real etcd, real calls through ClusterClient."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import hprose_cluster.gunicorn as hooks
from hprose_cluster import ClusterClient
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from tests.support.gunicorn import Gunicorn, wait_until
from tests.support.procs import MARK, kill_marked, new_mark, wait_gone

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def start(tmp_path: Path, etcd) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []
    mark = new_mark()

    def make(domain: str | None, *args: str, workers: int = 2, **env: str) -> Gunicorn:
        server = Gunicorn(tmp_path / ("g%d" % len(started)), etcd.endpoint, domain, args,
                          workers=workers, **{MARK: mark}, **env)
        started.append(server)
        return server

    make.mark = mark  # type: ignore[attr-defined]  # carried by every process started
    try:
        yield make
    finally:
        for server in started:
            server.close()
        kill_marked(mark)


_connections: dict[str, EtcdConnection] = {}


def records(etcd, domain: str) -> dict[str, tuple[str, int]]:
    """key -> (value, lease) of every record in ``domain``."""
    connection = _connections.get(etcd.endpoint)
    if connection is None:
        connection = _connections[etcd.endpoint] = EtcdConnection(
            EtcdConfig(etcd.endpoint, timeout=15))
    response = connection.get_prefix("hprose-service/%s/" % domain)
    return {kv.key: (kv.value.decode(), kv.lease) for kv in response.kvs}


@pytest.fixture(scope="module", autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    for connection in _connections.values():
        connection.close()
    _connections.clear()


def wait_records(etcd, domain: str, count: int, timeout: float = 30) -> dict[str, Any]:
    return wait_until(lambda: (lambda r: r if len(r) == count else None)(records(etcd, domain)),
                      timeout, "%d records in %s" % (count, domain))  # type: ignore[return-value]


def test_one_record_per_bound_address_kept_alive_by_the_master(start, etcd, domain):
    ports = [free_port(), free_port()]
    server = start(domain, "-b", "127.0.0.1:%d" % ports[0], "-b", "127.0.0.1:%d" % ports[1],
                   workers=3)
    server.wait_workers()
    found = wait_records(etcd, domain, 2)
    urls = sorted(value.split('"ServerUrl":"')[1].split('"')[0] for value, _ in found.values())
    assert urls == sorted("http://127.0.0.1:%d/" % port for port in ports)
    log = server.log()
    # registered once a worker is ready
    assert log.index("Booting worker") < log.index("hprose-cluster: registered")
    assert len(server.keeper_pids()) == 1  # one keeper, no registration per worker
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=10) as client:
        assert client.hello("gunicorn") == "Hello gunicorn"
        # a worker uses etcd itself: the master's fork left it a working gRPC
        assert client.count(domain) == 2
    time.sleep(3)  # longer than the 2 s TTL: the master's keeper refreshes the leases
    assert records(etcd, domain) == found


def test_worker_restarts_and_reloads_keep_the_record(start, etcd, domain):
    server = start(domain, "-b", "127.0.0.1:%d" % free_port())
    first = server.wait_workers()
    found = wait_records(etcd, domain, 1)
    for pid in first:
        os.kill(pid, signal.SIGKILL)  # a crashed worker
    wait_until(lambda: set(server.worker_pids()).isdisjoint(first)
               and len(server.worker_pids()) == 2, 30, "workers replaced")
    server.signal(signal.SIGHUP)  # a reload: new workers, same master
    wait_until(lambda: "Hang up" in server.log(), 30, "reload")
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=10) as client:
        assert client.hello("again") == "Hello again"
    assert records(etcd, domain) == found  # the same record, on the same lease


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stop_revokes_the_record_before_the_workers_drain(start, etcd, domain, sig):
    server = start(domain, "-b", "127.0.0.1:%d" % free_port(), workers=1)
    (worker,) = server.wait_workers()
    wait_records(etcd, domain, 1)
    outcome: dict[str, Any] = {}
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=20) as client:
        def slow_call() -> None:
            try:
                outcome["result"] = client.sleep(2)
            except Exception as error:
                outcome["error"] = error
            outcome["done"] = time.monotonic()

        caller = threading.Thread(target=slow_call)
        caller.start()
        wait_until(lambda: (server.folder / "sleeping").exists(), 20, "the call in a worker")
        server.signal(sig)
        # Watch both: the record must be gone while the worker still lives.
        gone_at = worker_exit = None
        deadline = time.monotonic() + 30
        while (gone_at is None or worker_exit is None) and time.monotonic() < deadline:
            now = time.monotonic()
            if gone_at is None and not records(etcd, domain):
                gone_at = now
            if worker_exit is None and worker not in server.worker_pids():
                worker_exit = now
                assert gone_at is not None, ("the worker stopped while still registered; "
                                             "log:\n" + server.log())
            time.sleep(0.01)
        caller.join(30)
    assert gone_at is not None and worker_exit is not None and gone_at <= worker_exit
    if sig == signal.SIGTERM:  # graceful: the call in flight finishes after the record went
        assert outcome.get("result") == 2, outcome
        assert gone_at < outcome["done"]
    assert server.proc.wait(30) == 0
    assert "deregistered" in server.log()


def test_an_existing_config_imports_the_hooks(start, etcd, domain, tmp_path):
    config = tmp_path / "gunicorn.conf.py"
    port = free_port()
    config.write_text("from hprose_cluster.gunicorn import when_ready, post_worker_init, "
                      "on_exit  # noqa: F401\n"
                      "bind = '127.0.0.1:%d'\n" % port)
    server = start(domain, "-c", str(config))
    wait_records(etcd, domain, 1)
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=10) as client:
        assert client.hello("config") == "Hello config"
    server.signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert records(etcd, domain) == {}


def test_a_killed_master_leaves_no_record_and_no_process(start, etcd, domain):
    server = start(domain, "-b", "127.0.0.1:%d" % free_port(), HPROSE_CLUSTER_TTL="30")
    server.wait_workers()
    wait_records(etcd, domain, 1)
    server.signal(signal.SIGKILL)
    # The keeper dies with the master and revokes: far sooner than the 30 s TTL.
    wait_until(lambda: not records(etcd, domain), 10, "record revoked")
    assert wait_gone(start.mark, 30) == []


def test_without_a_domain_gunicorn_serves_and_registers_nothing(start, etcd):
    port = free_port()
    server = start(None, "-b", "127.0.0.1:%d" % port)
    server.wait_workers()
    wait_until(lambda: "HPROSE_CLUSTER_DOMAIN is not set" in server.log(), 10, "warning")
    assert server.keeper_pids() == []
    from hprose_cluster.transport.http import HttpClient
    with HttpClient("http://127.0.0.1:%d/" % port, timeout=10) as client:
        assert client.hello("plain") == "Hello plain"


def test_the_module_sets_no_other_gunicorn_setting():
    """gunicorn takes every module-level name of a config module that matches a setting."""
    from gunicorn.config import KNOWN_SETTINGS

    names = {setting.name for setting in KNOWN_SETTINGS}
    assert names & set(vars(hooks)) == {"when_ready", "post_worker_init", "on_exit"}


@pytest.mark.parametrize("setting, value, words", [
    ("HPROSE_CLUSTER_DOMAIN", "bad domain", "contains ' '"),
    ("HPROSE_CLUSTER_ETCD", "ftp://h:1", "scheme must be http or https"),
    ("HPROSE_CLUSTER_HEARTBEAT", "5", "must be between 0 and"),
])
def test_bad_settings_stop_gunicorn_with_one_clear_line(start, domain, setting, value, words):
    server = start(domain, "-b", "127.0.0.1:%d" % free_port(), **{setting: value})
    assert server.proc.wait(60) != 0
    errors = [line for line in server.log().splitlines() if "hprose-cluster" in line]
    assert len(errors) == 1 and words in errors[0] and "not starting" in errors[0], errors

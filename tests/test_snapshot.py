"""The snapshot of a followed domain: a client starts from it while etcd is down, calls the
servers it lists, and follows etcd again as soon as etcd answers.  Real etcd, real servers."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from hprose_cluster import ClusterClient, Discovery, EtcdConfig, EtcdError, ServerInfo
from hprose_cluster.demo import make_server
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConnection, EtcdUnavailable
from hprose_cluster.snapshot import ENV_SNAPSHOT_DIR, DomainSnapshot

pytestmark = pytest.mark.timeout(120)


def _snapshot_file(directory: Path, domain: str) -> Path:
    return DomainSnapshot(directory, "hprose-service", domain).path


def _start_server(domain: str, config: EtcdConfig):
    server = make_server("tcp", domain, etcd=config, ttl=2, heartbeat=0.5)  # type: ignore[arg-type]
    server.drain_delay = 0.05
    server.start(block=False)
    return server


def test_a_client_starts_from_the_snapshot_while_etcd_is_down_and_follows_etcd_again(
        etcd_factory, domain, tmp_path):
    etcd = etcd_factory()
    # 3 s (was 1): the servers' first requests to a just-started etcd open the channel, grant
    # and put, which a loaded machine may not do within 1 s (the start then fails); with etcd
    # killed, every request is refused at once whatever the timeout
    config = EtcdConfig(etcd.endpoint, timeout=3)
    live, doomed = _start_server(domain, config), _start_server(domain, config)
    try:
        with ClusterClient(domain, etcd=config, snapshot_dir=tmp_path) as first:
            assert first.discovery.wait_for_servers(5, count=2)
            assert not first.discovery.from_snapshot
        saved = json.loads(_snapshot_file(tmp_path, domain).read_bytes())
        assert sorted(r["UUID"] for r in saved["records"]) == sorted([live.uuid, doomed.uuid])
        assert saved["domain"] == domain and saved["revision"] > 0

        etcd.kill()
        doomed.stop(drain_timeout=1)  # leaves while etcd is down: its record stays in etcd
        with pytest.raises(EtcdUnavailable):  # no snapshot: no start, as before
            ClusterClient(domain, etcd=config)

        with ClusterClient(domain, etcd=config, snapshot_dir=tmp_path, idempotent=True,
                           timeout=5) as client:
            assert client.discovery.from_snapshot
            assert {s.uuid for s in client.servers()} == {live.uuid, doomed.uuid}
            for i in range(10):  # the dead one is tried and failed over, the live one answers
                assert client.hello("s%d" % i) == "Hello s%d" % i
            assert saved == json.loads(_snapshot_file(tmp_path, domain).read_bytes()), \
                "a view from the snapshot was written back"

            etcd.start()  # same data dir: the doomed record is there until its lease expires
            assert client.discovery.wait_for(
                lambda view: not view.from_snapshot and live.uuid in view
                and doomed.uuid not in view, timeout=20), client.servers()
            assert client.hello("again") == "Hello again"
        assert _uuids(tmp_path, domain) == [live.uuid]  # the file follows etcd again
    finally:
        for server in (live, doomed):
            server.stop(drain_timeout=1)


def _uuids(directory: Path, domain: str) -> list[str]:
    return sorted(r["UUID"] for r in json.loads(_snapshot_file(directory, domain)
                                                 .read_bytes())["records"])


def test_the_snapshot_is_never_used_while_etcd_answers(etcd, domain, tmp_path):
    stale = ServerInfo(domain, "tcp://127.0.0.1:1", uuid="stale")
    DomainSnapshot(tmp_path, "hprose-service", domain).save([stale], 1)
    with Discovery(domain, etcd=etcd.endpoint, snapshot_dir=tmp_path) as discovery:
        assert len(discovery.view) == 0 and not discovery.from_snapshot
    assert _uuids(tmp_path, domain) == [], "the file still lists what etcd does not have"


def test_the_snapshot_follows_changes_and_the_environment_turns_it_on(etcd, domain, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv(ENV_SNAPSHOT_DIR, str(tmp_path))
    infos = [ServerInfo(domain, "tcp://127.0.0.1:%d" % (2000 + i), uuid="u%d" % i)
             for i in range(3)]
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer, \
            Discovery(domain, etcd=etcd.endpoint) as discovery:
        for info in infos:
            writer.put(info.key(), info.to_json())
        writer.delete(infos[0].key())
        assert discovery.wait_for(lambda view: set(view.by_uuid) == {"u1", "u2"}, timeout=5)
        deadline = time.monotonic() + 5  # written at most a second after the change
        while _uuids(tmp_path, domain) != ["u1", "u2"]:
            assert time.monotonic() < deadline, _uuids(tmp_path, domain)
            time.sleep(0.1)
    leftovers = [p.name for p in _snapshot_file(tmp_path, domain).parent.iterdir()]
    assert leftovers == [domain + ".json"], "temporary files left: %s" % leftovers


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": 1}',
                                     b'{"format": 1, "prefix": "hprose-service", '
                                     b'"domain": "other.svc", "revision": 1, "records": []}'])
def test_a_corrupt_snapshot_is_reported_and_ignored(domain, tmp_path, caplog, content):
    path = _snapshot_file(tmp_path, domain)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    unreachable = EtcdConfig("127.0.0.1:%d" % free_port(), timeout=1)
    with caplog.at_level(logging.WARNING, logger="hprose_cluster"), \
            pytest.raises(EtcdError) as caught:
        Discovery(domain, etcd=unreachable, snapshot_dir=tmp_path).start()
    assert str(path) in str(caught.value) and "corrupt" in str(caught.value)
    assert any(str(path) in r.getMessage() and "ignoring" in r.getMessage()
               for r in caplog.records)


def test_a_record_that_does_not_validate_makes_the_snapshot_corrupt(domain, tmp_path):
    snapshot = DomainSnapshot(tmp_path, "hprose-service", domain)
    snapshot.save([ServerInfo(domain, "tcp://127.0.0.1:1", uuid="a")], 3)
    document = json.loads(snapshot.path.read_bytes())
    document["records"][0]["ServerUrl"] = "gopher://127.0.0.1:1"
    snapshot.path.write_text(json.dumps(document))
    unreachable = EtcdConfig("127.0.0.1:%d" % free_port(), timeout=1)
    with pytest.raises(EtcdError, match="corrupt.*gopher"):
        Discovery(domain, etcd=unreachable, snapshot_dir=tmp_path).start()


def test_file_names_are_safe_for_any_prefix_and_domain(tmp_path):
    odd = DomainSnapshot(tmp_path, "a/b", "..")
    assert odd.path.parent.parent == tmp_path and not odd.path.name.startswith(".")
    long = DomainSnapshot(tmp_path, "p", "d" * 253)
    assert len(long.path.name) <= 210
    long.save([], 1)
    assert long.load() is not None

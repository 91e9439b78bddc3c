"""``hprose-cluster watch``: servers present, joining and leaving, through etcd trouble."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from hprose_cluster.demo import make_server
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from tests.support.cli import Lines, unique

pytestmark = pytest.mark.timeout(120)


def _record(domain: str, uuid: str) -> bytes:
    return json.dumps({"UUID": uuid, "Domain": domain, "ServerUrl": "tcp://h:1",
                       "CPU": 1}).encode()


def test_watch_sees_servers_join_and_leave(cluster, etcd, lines):
    domain = cluster["tcp"]
    everything = lines("watch")
    one_domain = lines("watch", domain, "--json")
    present = {s.uuid for s in cluster["servers"]}
    for _ in present:  # both print the servers already there first
        everything.wait_for(lambda line: " present " in line and line.split()[3] in present)
    for _ in range(2):
        one_domain.wait_for(lambda line: json.loads(line)["event"] == "present")

    newcomer = make_server("tcp", domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5)
    newcomer.drain_delay = 0
    newcomer.start(block=False)
    try:
        line = everything.wait_for(lambda line: newcomer.uuid in line)
        assert line.split()[1:] == ["joined", domain, newcomer.uuid, newcomer.url]
        event = json.loads(one_domain.wait_for(lambda line: newcomer.uuid in line))
        assert (event["event"], event["domain"], event["url"]) == ("joined", domain, newcomer.url)
    finally:
        newcomer.stop()
    assert everything.wait_for(lambda line: newcomer.uuid in line).split()[1] == "left"
    assert json.loads(one_domain.wait_for(lambda line: newcomer.uuid in line))["event"] == "left"

    assert everything.stop(signal.SIGINT) == 0
    assert one_domain.stop(signal.SIGTERM) == 0
    assert "Traceback" not in everything.stderr() + one_domain.stderr()


def test_watch_of_the_whole_prefix_reports_a_record_deleted_behind_its_back(etcd, lines):
    """A put and a delete that no server made (what `etcdctl` would do) show up too."""
    domain = unique("raw")
    key = "hprose-service/%s/u1" % domain
    watcher = lines("watch", "--json")
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
        # Wait until the watch is up: its first read is done when it printed or stayed quiet;
        # a record put repeatedly until it is seen removes the race.
        seen = threading.Event()

        def keep_putting() -> None:
            while not seen.is_set():
                connection.put(key, _record(domain, "u1"))
                seen.wait(0.5)

        putter = threading.Thread(target=keep_putting, daemon=True)
        putter.start()
        try:
            event = json.loads(watcher.wait_for(lambda line: domain in line))
        finally:
            seen.set()
            putter.join(5)
        assert event["event"] in ("joined", "present") and event["uuid"] == "u1"
        connection.delete(key)
    assert json.loads(watcher.wait_for(lambda line: domain in line))["event"] == "left"
    assert watcher.stop() == 0


def test_watch_of_the_whole_prefix_survives_an_etcd_restart(etcd_factory):
    """The etcd client's watch dies with its stream; `watch` must re-read and watch again."""
    server = etcd_factory()
    endpoint = server.endpoint
    domain = unique("restart")
    watcher = Lines(endpoint, "watch")
    try:
        with EtcdConnection(EtcdConfig(endpoint, timeout=3)) as connection:
            connection.put("hprose-service/%s/before" % domain, _record(domain, "before"))
            watcher.wait_for(lambda line: "before" in line)
            connection.put("hprose-service/%s/ready" % domain, _record(domain, "ready"))
            watcher.wait_for(lambda line: "ready" in line)  # the watch is live
            server.stop()
            server.start()
            deadline = time.monotonic() + 20
            while True:  # the connection itself reconnects; retry while etcd comes back
                try:
                    connection.put("hprose-service/%s/after" % domain, _record(domain, "after"))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            line = watcher.wait_for(lambda line: "after" in line)
            assert line.split()[1:4] == ["joined", domain, "after"]
            connection.delete("hprose-service/%s/before" % domain)
            assert watcher.wait_for(lambda line: "before" in line).split()[1] == "left"
        assert watcher.stop() == 0
    finally:
        watcher.close()

"""``hprose-cluster register``: a record kept for a server that does not register itself."""

from __future__ import annotations

import json
import signal
import time
from uuid import uuid4

import pytest

from hprose_cluster import ClusterClient
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.transport.tcp import TcpServer
from tests.support.cli import run, unique

pytestmark = pytest.mark.timeout(120)


def test_register_makes_a_plain_server_reachable_until_interrupted(etcd, lines):
    domain = unique("plain")
    server = TcpServer("127.0.0.1", 0)
    server.addFunction(lambda name: "plain hello %s" % name, "hello")
    server.start(block=False)
    try:
        registered = lines("register", domain, server.url, "--cpu", "3", "--ttl", "2",
                           "--heartbeat", "0.5")
        key = registered.wait_for(lambda line: True)
        assert key.startswith("hprose-service/%s/" % domain)
        with ClusterClient(domain, etcd=etcd.endpoint, timeout=5) as client:
            assert client.hello("bob") == "plain hello bob"
            (info,) = client.servers()
            assert (info.url, info.cpu, info.key()) == (server.url, 3, key)
        assert registered.stop(signal.SIGINT) == 0
        # Revoked on exit, not left to expire: gone right away.
        with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
            assert not connection.get(key).kvs
        assert "removed %s" % key in registered.stderr()
    finally:
        server.stop()


def test_register_json_and_given_uuid_then_sigterm(etcd, lines):
    domain = unique("plain")
    uuid = "fixed-" + uuid4().hex[:6]
    port = free_port()  # nothing listens there: registering still works, with a warning
    registered = lines("register", domain, "http://127.0.0.1:%d/" % port, "--uuid", uuid,
                       "--ttl", "2", "--heartbeat", "0.5", "--json")
    record = json.loads(registered.wait_for(lambda line: True))
    assert record["key"] == "hprose-service/%s/%s" % (domain, uuid)
    assert (record["uuid"], record["ttl"]) == (uuid, 2)
    time.sleep(2.5)  # longer than the TTL: the heartbeat keeps it
    listed = run(etcd.endpoint, "get", domain, uuid, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["lease"] == record["lease"]
    assert registered.stop(signal.SIGTERM) == 0
    assert "nothing answers at" in registered.stderr()
    assert run(etcd.endpoint, "get", domain, uuid).returncode == 1


def test_a_closed_terminal_removes_the_record_too(etcd, lines):
    """SIGHUP (the terminal closed) is a stop like Ctrl-C: the record goes at once."""
    domain = unique("plain")
    registered = lines("register", domain, "tcp4://127.0.0.1:%d" % free_port(), "--ttl", "10")
    key = registered.wait_for(lambda line: True)
    assert registered.stop(signal.SIGHUP) == 0
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
        assert not connection.get(key).kvs  # revoked, not left for its 10 s TTL

"""``hprose-cluster etcd``: a development etcd in the foreground."""

from __future__ import annotations

import signal
import socket

import pytest

from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

pytestmark = pytest.mark.timeout(120)


def test_etcd_subcommand_serves_until_sigterm(tmp_path, lines):
    data_dir = tmp_path / "data"
    client_port, peer_port = free_port(), free_port()
    server = lines("etcd", "--data-dir", str(data_dir), "--client-port", str(client_port),
                   "--peer-port", str(peer_port))
    endpoint = "127.0.0.1:%d" % client_port
    assert server.wait_for(lambda line: line.startswith("etcd is up"), 30).startswith(
        "etcd is up at %s" % endpoint)
    assert server.wait_for(lambda line: True) == "export HPROSE_CLUSTER_ETCD=%s" % endpoint
    with EtcdConnection(EtcdConfig(endpoint, timeout=3)) as connection:
        connection.put("hprose-service/x.y/z", b"{}")
        assert connection.get("hprose-service/x.y/z").kvs[0].value == b"{}"
    assert server.stop(signal.SIGTERM, timeout=30) == 0
    assert (data_dir / "member").is_dir()  # a given data dir is kept
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", client_port), timeout=2).close()

"""``hprose-cluster etcd``: a development etcd in the foreground."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from tests.support import netns
from tests.support.cli import env, run
from tests.support.procs import assert_cleaned_up

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


def _listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _assert_one_line_naming(result, port: int, which: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""  # in particular no "etcd is up" and no export line
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hprose-cluster: error: port %d " % port), lines
    assert which in lines[0], lines


@pytest.mark.parametrize("which", ["client", "peer"])
def test_a_taken_port_is_named_and_never_replaced(which, etcd, sandbox):
    """The port an etcd already uses (the session's, which answers health checks) and a
    plain listener: one line naming that port, exit 1, no other port tried."""
    taken = etcd.client_port if which == "client" else etcd.peer_port
    other = "--peer-port" if which == "client" else "--client-port"
    result = run(None, "etcd", "--%s-port" % which, str(taken), other, "0", **sandbox)
    _assert_one_line_naming(result, taken, which)
    with _listener(0) as sock:
        port = sock.getsockname()[1]
        result = run(None, "etcd", "--%s-port" % which, str(port), other, "0", **sandbox)
    _assert_one_line_naming(result, port, which)
    assert_cleaned_up(sandbox)


_DRIVER = """
import json, socket, subprocess, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
result = subprocess.run([sys.executable, "-m", "hprose_cluster", "etcd"], capture_output=True,
                        text=True, timeout=60)
print(json.dumps([result.returncode, result.stdout, result.stderr]))
"""


@pytest.mark.parametrize("port, which", [(2379, "client"), (2380, "peer")])
def test_the_default_ports_taken(port, which, sandbox):
    """``hprose-cluster etcd`` with no option while 2379 (or 2380) is taken, in a network
    namespace of the test's own so the real default ports can be used."""
    completed = subprocess.run(netns.wrap([sys.executable, "-c", _DRIVER, str(port)]),
                               capture_output=True, text=True, timeout=90,
                               env=env(None, **sandbox))
    assert completed.returncode == 0, completed.stderr
    code, stdout, stderr = json.loads(completed.stdout)
    _assert_one_line_naming(subprocess.CompletedProcess([], code, stdout, stderr), port, which)
    assert_cleaned_up(sandbox)

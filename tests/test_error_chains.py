"""A Python API error from etcd reads as a short chain: our message last, the real gRPC cause
first, and no pages of grpc/etcd3 internals in between."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hprose_cluster.embedded import free_port

pytestmark = pytest.mark.timeout(120)

_CALLS = {
    "client": "from hprose_cluster import ClusterClient\nClusterClient('x.y', etcd=E)",
    "discovery": "from hprose_cluster import Discovery\nDiscovery('x.y', etcd=E).start()",
    "registrar": "from hprose_cluster import Registrar, ServerInfo\n"
                 "Registrar(ServerInfo('x.y', 'tcp://h:1'), etcd=E).start()",
}


@pytest.mark.parametrize("what", sorted(_CALLS))
def test_an_unreachable_etcd_gives_a_short_traceback(what):
    endpoint = "127.0.0.1:%d" % free_port()
    code = "E = %r\n%s\n" % (endpoint, _CALLS[what])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    # one of our errors: from hprose_cluster.errors, or a typed one of the etcd package
    assert re.match(r"hprose_cluster\.(etcd\.)?errors\.\w+: ", lines[-1]), lines[-1]
    assert endpoint in lines[-1], lines[-1]
    assert "Connection refused" in lines[-1]
    assert "During handling of the above exception" not in result.stderr
    assert "grpc/_channel.py" not in result.stderr and "etcd3/client.py" not in result.stderr
    assert "_InactiveRpcError" in result.stderr  # the real cause is still chained
    assert len(lines) <= 40, result.stderr  # was 64 lines

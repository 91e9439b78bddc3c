"""Every read command goes to any live member: a dead endpoint in --etcd does not fail it."""

from __future__ import annotations

import pytest

from hprose_cluster.embedded import free_port
from tests.support.cli import run

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("dead_first", [False, True], ids=["live-first", "dead-first"])
def test_ls_and_get_use_a_live_endpoint_when_another_is_down(cluster, etcd, dead_first):
    dead = "127.0.0.1:%d" % free_port()  # nothing listens there
    endpoints = [dead, etcd.endpoint] if dead_first else [etcd.endpoint, dead]
    server = cluster["servers"][2]
    commands = [["ls"], ["ls", cluster["tcp"]], ["get", cluster["http"], server.uuid],
                ["ls", "--json"], ["get", cluster["http"], server.uuid, "--json"]]
    # etcd3 starts on a random endpoint: a few runs of each would have hit the dead one.
    for _ in range(4):
        for args in commands:
            result = run(None, "--etcd", ",".join(endpoints), *args)
            assert result.returncode == 0, (args, result.stderr)
            assert "Connection refused" not in result.stderr

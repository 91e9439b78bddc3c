"""``hprose-cluster get DOMAIN UUID`` against a real etcd."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run

pytestmark = pytest.mark.timeout(120)


def test_get_prints_the_record_as_stored(cluster, etcd):
    server = cluster["servers"][2]
    raw = run(etcd.endpoint, "get", cluster["http"], server.uuid)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.rstrip("\n").encode() == server.info.to_json()

    as_json = run(etcd.endpoint, "get", cluster["http"], server.uuid, "--json")
    assert as_json.returncode == 0, as_json.stderr
    entry = json.loads(as_json.stdout)
    assert entry["key"] == server.info.key()
    assert entry["lease"] == server.registrar.lease_id
    assert 0 <= entry["ttl"] <= 2 and entry["mod_revision"] > 0
    assert entry["value"] == json.loads(server.info.to_json())

    missing = run(etcd.endpoint, "get", cluster["http"], "no-such-uuid")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.strip() == ("hprose-cluster: error: no server no-such-uuid in domain "
                                      "%r (etcd %s)" % (cluster["http"], etcd.endpoint))

"""``hprose-cluster ls`` and ``ls DOMAIN`` against a real etcd."""

from __future__ import annotations

import json

import pytest

from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from tests.support.cli import run, unique

pytestmark = pytest.mark.timeout(120)


def test_ls_lists_domains_with_counts_and_warns_about_malformed_records(cluster, etcd):
    bad_domain = unique("bad")
    bad_key = "hprose-service/%s/broken" % bad_domain
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as connection:
        connection.put(bad_key, b"{not json")
        try:
            table = run(etcd.endpoint, "ls")
            as_json = run(etcd.endpoint, "ls", "--json")
        finally:
            connection.delete(bad_key)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["DOMAIN", "SERVERS", "SKIPPED"]
    assert [cluster["tcp"], "2", "0"] in rows
    assert [cluster["http"], "1", "0"] in rows
    assert [bad_domain, "0", "1"] in rows
    assert "warning: skipping record %s is not valid JSON" % bad_key in table.stderr
    assert as_json.returncode == 0, as_json.stderr
    listed = {row["domain"]: row for row in json.loads(as_json.stdout)}
    assert listed[cluster["tcp"]] == {"domain": cluster["tcp"], "servers": 2, "skipped": 0}
    assert listed[cluster["http"]]["servers"] == 1
    assert listed[bad_domain] == {"domain": bad_domain, "servers": 0, "skipped": 1}


def test_ls_domain_shows_each_server_with_its_lease_ttl(cluster, etcd):
    servers = cluster["servers"][:2]
    table = run(etcd.endpoint, "ls", cluster["tcp"])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["UUID", "URL", "CPU", "TTL"]
    rows = {row[0]: row for row in (line.split() for line in lines[1:])}
    assert set(rows) == {s.uuid for s in servers}
    for server in servers:
        uuid, url, cpu, ttl = rows[server.uuid]
        assert (url, int(cpu)) == (server.url, server.cpu)
        assert 0 <= int(ttl) <= 2
    # Columns are aligned: every URL starts at the same offset.
    assert len({line.index("tcp4://") for line in lines[1:]}) == 1

    as_json = run(etcd.endpoint, "ls", cluster["tcp"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout)
    assert sorted(e["value"]["UUID"] for e in entries) == sorted(s.uuid for s in servers)
    for entry in entries:
        assert entry["key"] == "hprose-service/%s/%s" % (cluster["tcp"], entry["value"]["UUID"])
        assert entry["lease"] > 0 and 0 <= entry["ttl"] <= 2 and entry["mod_revision"] > 0


def test_unknown_domain_fails_with_a_message_naming_it(etcd):
    domain = unique("none")
    for args in (["ls", domain], ["call", domain, "hello", "x"]):
        result = run(etcd.endpoint, *args)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr.startswith("hprose-cluster: error: ")
        assert repr(domain) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no traceback

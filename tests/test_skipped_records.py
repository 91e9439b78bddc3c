"""Records a client cannot use (invalid, or a scheme it does not speak) are skipped: a call to
a domain that holds only such records says which and why, and each is logged once per
process however many clients follow the domain."""

from __future__ import annotations

import json
import logging

import pytest

from hprose_cluster import ClusterClient, FailoverPolicy, NoServerAvailable
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

pytestmark = pytest.mark.timeout(60)

QUICK = FailoverPolicy(wait_for_server=0.2)


def _record(domain: str, uuid: str, url: str) -> bytes:
    return json.dumps({"UUID": uuid, "Domain": domain, "ServerUrl": url, "CPU": 1}).encode()


@pytest.fixture
def unusable(etcd, domain):
    """Two records of ``domain`` with a scheme no client speaks, one that is not JSON."""
    keys = {"hprose-service/%s/%s" % (domain, uuid): _record(domain, uuid, url)
            for uuid, url in (("g1", "gopher://127.0.0.1:1"), ("g2", "gopher://127.0.0.1:2"))}
    keys["hprose-service/%s/junk" % domain] = b"{not json"
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer:
        for key, value in keys.items():
            writer.put(key, value)
        yield keys
        for key in keys:
            writer.delete(key)


def test_a_domain_of_skipped_records_names_them_in_no_server_available(etcd, domain, unusable):
    with ClusterClient(domain, etcd=etcd.endpoint, failover=QUICK) as client:
        assert len(client.discovery.view.skipped) == 3
        with pytest.raises(NoServerAvailable) as caught:
            client.hello("x")
    message = str(caught.value)
    assert "no server available for hello in domain %r" % domain in message
    assert "3 records skipped" in message
    for key in unusable:
        assert key in message, message
    assert "scheme 'gopher'" in message and "not valid JSON" in message


def test_many_skipped_records_are_counted_and_the_first_few_shown(etcd, domain):
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer:
        keys = ["hprose-service/%s/g%02d" % (domain, i) for i in range(12)]
        for key in keys:
            writer.put(key, _record(domain, key.rsplit("/", 1)[1], "gopher://127.0.0.1:1"))
        try:
            with ClusterClient(domain, etcd=etcd.endpoint, failover=QUICK) as client:
                with pytest.raises(NoServerAvailable, match="12 records skipped") as caught:
                    client.hello("x")
            assert "and 9 more" in str(caught.value)
        finally:
            for key in keys:
                writer.delete(key)


def test_twenty_clients_log_each_skipped_record_once(etcd, domain, unusable, caplog):
    with caplog.at_level(logging.WARNING, logger="hprose_cluster"):
        clients = [ClusterClient(domain, etcd=etcd.endpoint, failover=QUICK) for _ in range(20)]
        for client in clients:
            client.close()
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert sorted(w.split()[2].rstrip(":") for w in warnings) == sorted(unusable), warnings


def test_a_skipped_record_that_becomes_valid_is_no_longer_named(etcd, domain, hello_servers):
    key = "hprose-service/%s/late" % domain
    with EtcdConnection(EtcdConfig(etcd.endpoint)) as writer, \
            ClusterClient(domain, etcd=etcd.endpoint, failover=QUICK) as client:
        writer.put(key, _record(domain, "late", "gopher://127.0.0.1:1"))
        assert client.discovery.wait_for(lambda view: key in view.skipped, timeout=5)
        server = hello_servers(domain)
        writer.put(key, _record(domain, "late", server.url))
        assert client.discovery.wait_for(lambda view: not view.skipped and "late" in view,
                                         timeout=5)
        writer.delete(key)
        assert client.hello("y") == "Hello y"

"""A domain is read in pages, all at one revision, and Discovery sees every record of it.

Read in one reply, a domain of ~19,000 records went over gRPC's 4 MB default and failed with
RESOURCE_EXHAUSTED, and 100,000 records kept ~40 MB of reply in the process; pages of a few
thousand keys, read at the first page's revision, avoid both.
"""

from __future__ import annotations

import pytest

from hprose_cluster import Discovery, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

pytestmark = pytest.mark.timeout(60)


def _put_many(connection: EtcdConnection, prefix: str, infos: list[ServerInfo],
              lease: int) -> None:
    for start in range(0, len(infos), 100):
        chunk = infos[start:start + 100]
        connection.call("txn", lambda c, chunk=chunk: c.transaction(
            compare=[], failure=[],
            success=[c.transactions.put(i.key(prefix), i.to_json(), lease=lease)
                     for i in chunk]))


def test_pages_cover_the_prefix_at_the_first_pages_revision(etcd, domain):
    config = EtcdConfig(endpoints=etcd.endpoint)
    infos = [ServerInfo(domain, "tcp://127.0.0.1:%d" % (20000 + i), cpu=1) for i in range(12)]
    with EtcdConnection(config) as connection:
        lease = connection.grant(30)
        try:
            _put_many(connection, config.prefix, infos, lease)
            prefix = "%s/%s/" % (config.prefix, domain)
            pages = connection.get_prefix_pages(prefix, page_size=5)
            first = next(pages)
            late = ServerInfo(domain, "tcp://127.0.0.1:30000", cpu=1)
            connection.put(late.key(config.prefix), late.to_json(), lease)  # after the 1st page
            responses = [first] + list(pages)
            keys = [kv.key for r in responses for kv in r.kvs]
            # a page of the whole prefix, then the rest in sub-ranges: at most 5 keys a page
            assert len(responses[0].kvs) == 5 and max(len(r.kvs) for r in responses) == 5
            assert keys == sorted(i.key(config.prefix) for i in infos)  # not the late one
            assert late.key(config.prefix) not in keys
        finally:
            connection.revoke(lease)


def test_discovery_reads_a_domain_larger_than_one_grpc_message(etcd, domain):
    """25,000 records of ~210 bytes: one reply would be ~5.3 MB, over gRPC's 4 MB default."""
    config = EtcdConfig(endpoints=etcd.endpoint, timeout=30)
    infos = [ServerInfo(domain, "tcp://127.%d.%d.%d:9" % (i // 62500, i // 250 % 250,
                                                        i % 250 + 1), cpu=1)
             for i in range(25_000)]
    with EtcdConnection(config) as connection:
        lease = connection.grant(60)
        try:
            _put_many(connection, config.prefix, infos, lease)
            with Discovery(domain, etcd=config) as discovery:
                assert len(discovery.view) == len(infos)
                assert {s.uuid for s in discovery.servers()} == {i.uuid for i in infos}
        finally:
            connection.revoke(lease)


def test_pages_cover_keys_of_any_first_character_in_order(etcd, domain):
    """After the first page the rest is read in sub-ranges cut at the byte after the prefix:
    keys whose next byte is no hex digit (or is none at all, or not ASCII) are read too."""
    config = EtcdConfig(endpoints=etcd.endpoint)
    prefix = "%s/%s/" % (config.prefix, domain)
    tails = ["", "-", "0", "0a", "1", "9~", "A", "Z", "_", "a", "b-", "f", "fff", "g", "z", "~",
             "é", "\u4e2d", "00000000-0000", "ffffffff-ffff"] + ["%x" % i for i in range(40)]
    keys = sorted({prefix + tail for tail in tails}, key=lambda k: k.encode("utf-8"))
    with EtcdConnection(config) as connection:
        lease = connection.grant(30)
        try:
            connection.put_many([(key, b"v") for key in keys], lease)
            calls = []
            plain_call = connection.call

            def counting(what, func):
                calls.append(what)
                return plain_call(what, func)

            connection.call = counting  # type: ignore[method-assign]
            read = [kv.key for page in connection.get_prefix_pages(prefix, page_size=3)
                    for kv in page.kvs]
            assert read == keys
            calls.clear()
            assert [len(page.kvs) for page in connection.get_prefix_pages(prefix + "ff")] == [2]
            assert len(calls) == 1  # a small prefix: one request
        finally:
            connection.revoke(lease)

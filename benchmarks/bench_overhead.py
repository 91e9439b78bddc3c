"""1. What discovery costs per call, and 2. that the cost does not grow with the domain.

1. A ``ClusterClient`` and a direct client (``HttpClient``/``TcpClient``) call the same single
   server (a subprocess) in alternating rounds, from 1 and 8 threads.
2. Two ``ClusterClient``s on the same real TCP server: one in a domain holding only it, one in
   a domain of 10,000 records (9,999 put straight into etcd on a few leases, pointing at
   loopback addresses where nothing listens).  Both are pinned to the real server by
   ``PinnedPrimary``, a ``RandomPrimary`` whose first choice is that server: every call still
   goes through the ordinary ``pick()`` against the whole view (membership check of the
   primary in a 10,000-entry view, ejection check), which is the per-call work being measured.
   Also: start-up time and memory of a client of 10,000 servers, and the raw cost of one
   ``pick()`` for each selector over 1 and 10,000 servers.
"""

from __future__ import annotations

import gc
import timeit
import tracemalloc
from contextlib import ExitStack
from typing import Any, Collection

from common import (Row, ServerProcess, Settings, fmt_ms, fmt_rate, interleaved, median,
                    new_domain, ratio, rss_bytes)

from hprose_cluster import ClusterClient, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.failover import Ejector
from hprose_cluster.selector import RandomPrimary, make_selector
from hprose_cluster.transport.http import HttpClient
from hprose_cluster.transport.tcp import TcpClient


class PinnedPrimary(RandomPrimary):
    """``RandomPrimary`` whose first primary is the server with ``uuid`` (the real one)."""

    def __init__(self, uuid: str):
        super().__init__()
        self.uuid = uuid

    def pick(self, view: Any, exclude: Collection[str], ejector: Ejector) -> ServerInfo | None:
        if self._primary is None:
            self._primary = view.by_uuid.get(self.uuid)
        return super().pick(view, exclude, ejector)


def discovery_overhead(etcd: str, settings: Settings, **_: object) -> list[Row]:
    rows: list[Row] = []
    for transport, direct_class in (("http", HttpClient), ("tcp", TcpClient)):
        domain = new_domain("overhead-" + transport)
        with ExitStack() as stack:
            server = stack.enter_context(ServerProcess(transport, domain, etcd))
            direct = stack.enter_context(direct_class(server.url))
            # A second, identical direct client: the A/A control that shows the noise floor.
            control = stack.enter_context(direct_class(server.url))
            cluster = stack.enter_context(ClusterClient(domain, etcd=etcd))
            if not cluster.discovery.wait_for_servers(10):
                raise RuntimeError("the client never saw its server in %s" % domain)
            for threads in (1, 8):
                rates = interleaved({"direct": lambda: direct.hello("w"),
                                     "cluster": lambda: cluster.hello("w"),
                                     "control": lambda: control.hello("w")}, threads, settings)
                of_medians, paired = ratio(rates, "cluster", "direct")
                noise, _ = ratio(rates, "control", "direct")
                d, c = median(rates["direct"]), median(rates["cluster"])
                extra_us = (threads / c - threads / d) * 1e6
                rows.append(Row(
                    "1. discovery overhead",
                    "%s, %d thread%s: ClusterClient / direct %sClient" % (
                        transport.upper(), threads, "s" if threads > 1 else "",
                        "Http" if transport == "http" else "Tcp"),
                    "%.3f (direct %s, cluster %s; %+.1f us/call; A/A control %.3f)" % (
                        of_medians, fmt_rate(d), fmt_rate(c), extra_us, noise),
                    ">= 0.97", of_medians >= 0.97,
                    {"paired_ratio": paired, "direct": rates["direct"],
                     "cluster": rates["cluster"]}))
    rows.append(_pure_overhead(etcd))
    return rows


class _Canned:
    """A transport that answers at once with a fixed reply: the call path without the wire."""

    url = "tcp://127.0.0.1:9"
    reply = b'Rs7"Hello w"z'

    def round_trip(self, request: bytes, timeout: float | None) -> bytes:
        return self.reply

    def close(self) -> None:
        pass


class _CannedClient(TcpClient):
    """A direct client over the canned transport (TcpClient's own call path)."""

    def __init__(self) -> None:
        super().__init__(_Canned.url)
        self.transport = _Canned()


def _pure_overhead(etcd: str) -> Row:
    """ClusterClient's own cost per call, measured without the network noise of the rows above:
    both clients run their whole call path (encode, pick, failover bookkeeping, decode) over a
    transport that answers at once; the difference is what ClusterClient adds to each call."""
    domain = new_domain("canned")
    record = ServerInfo(domain, _Canned.url, cpu=1)
    with EtcdConnection(EtcdConfig(endpoints=etcd)) as connection, ExitStack() as stack:
        connection.put(record.key(), record.to_json())
        stack.callback(connection.delete, record.key())
        cluster = stack.enter_context(ClusterClient(domain, etcd=etcd))
        cluster._transports[_Canned.url] = _Canned()
        direct = stack.enter_context(_CannedClient())
        assert cluster.hello("w") == direct.hello("w") == "Hello w"
        best = {}
        for name, client in (("direct", direct), ("cluster", cluster)) * 2:
            per_call = min(timeit.repeat(lambda: client.hello("w"), number=20000, repeat=3)) / 20000
            best[name] = min(best.get(name, per_call), per_call)
    extra_us = (best["cluster"] - best["direct"]) * 1e6
    return Row("1. discovery overhead",
               "ClusterClient's own cost per call (canned transport, 1 thread)",
               "%+.1f us/call (direct %.1f us, cluster %.1f us per call)" % (
                   extra_us, best["direct"] * 1e6, best["cluster"] * 1e6),
               "", None, {"direct_s": best["direct"], "cluster_s": best["cluster"]})


def _put_records(connection: EtcdConnection, infos: list[ServerInfo], lease_ids: list[int],
                 prefix: str, batch: int = 100) -> None:
    """Put records in transactions of ``batch`` puts, spread over ``lease_ids``."""
    for start in range(0, len(infos), batch):
        chunk = infos[start:start + batch]
        lease = lease_ids[(start // batch) % len(lease_ids)]

        def txn(client: Any, chunk: list[ServerInfo] = chunk, lease: int = lease) -> Any:
            puts = [client.transactions.put(info.key(prefix), info.to_json(), lease=lease)
                    for info in chunk]
            return client.transaction(compare=[], success=puts, failure=[])

        connection.call("putting %d records" % len(chunk), txn)


def cluster_size(etcd: str, settings: Settings, size: int = 10_000, **_: object) -> list[Row]:
    rows: list[Row] = []
    config = EtcdConfig(endpoints=etcd)
    small, big = new_domain("size1"), new_domain("size%d" % size)
    with ExitStack() as stack:
        connection = stack.enter_context(EtcdConnection(config))
        server = stack.enter_context(ServerProcess("tcp", small, etcd))
        leases = [connection.grant(300) for _ in range(4)]
        stack.callback(lambda: [connection.revoke(lease) for lease in leases])
        real = ServerInfo(big, server.url, cpu=1)
        fakes = [ServerInfo(big, "tcp://127.1.%d.%d:9" % (i // 250, i % 250 + 1), cpu=1)
                 for i in range(size - 1)]
        _put_records(connection, [real] + fakes, leases, config.prefix)

        # Start-up (median of a few) and memory of a client that reads 10,000 records.
        startups, startups_small = [], []
        for _ in range(2 if settings.quick else 5):
            for domain, into in ((small, startups_small), (big, startups)):
                gc.collect()
                began = timeit.default_timer()
                client = ClusterClient(domain, etcd=etcd)
                into.append(timeit.default_timer() - began)
                seen = len(client.servers())
                client.close()
                if domain == big and seen != size:
                    raise RuntimeError("the client read %d of %d servers" % (seen, size))
        gc.collect()
        rss_before = rss_bytes()
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        probe = ClusterClient(big, etcd=etcd)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced_before
        tracemalloc.stop()
        rss_delta = rss_bytes() - rss_before
        probe.close()
        rows.append(Row("2. cluster size", "start-up of a ClusterClient, %d servers" % size,
                        "%s (1 server: %s)" % (fmt_ms(median(startups)),
                                               fmt_ms(median(startups_small))),
                        "< 1 s", median(startups) < 1.0, {"runs": startups}))
        rows.append(Row("2. cluster size", "memory a %d-server client adds" % size,
                        "%.1f MB traced by tracemalloc, %.1f MB RSS" % (traced / 2**20,
                                                                         rss_delta / 2**20),
                        "< 50 MB", max(traced, rss_delta) < 50 * 2**20))

        # Calls per second: 1-server domain against 10,000-server domain, same real server.
        one = stack.enter_context(ClusterClient(small, etcd=etcd))
        many = stack.enter_context(ClusterClient(big, etcd=etcd, selector=PinnedPrimary(real.uuid)))
        one.discovery.wait_for_servers(10)
        one.selector = PinnedPrimary(one.servers()[0].uuid)
        for threads in (1, 8):
            rates = interleaved({"1": lambda: one.hello("w"), "many": lambda: many.hello("w")},
                                threads, settings)
            of_medians, paired = ratio(rates, "many", "1")
            rows.append(Row("2. cluster size",
                            "TCP, %d thread%s: calls/s with %d servers / with 1"
                            % (threads, "s" if threads > 1 else "", size),
                            "%.3f (1: %s, %d: %s)" % (of_medians, fmt_rate(median(rates["1"])),
                                                      size, fmt_rate(median(rates["many"]))),
                            ">= 0.95", of_medians >= 0.95, {"paired_ratio": paired}))
        stray = set(many._transports) - {real.url}
        if stray:
            raise RuntimeError("the pinned client called servers that do not exist: %s"
                               % sorted(stray)[:3])

        # The pick itself, per selector.
        ejector = Ejector()
        for name in ("random", "round-robin", "weighted"):
            costs = []
            for view in (one.discovery.view, many.discovery.view):
                selector = make_selector(name)
                selector.pick(view, (), ejector)
                number = 20_000 if settings.quick else 100_000
                best = min(timeit.repeat(lambda: selector.pick(view, (), ejector),
                                         number=number, repeat=3))
                costs.append(best / number * 1e6)
            rows.append(Row("2. cluster size", "one %s pick(), 1 vs %d servers" % (name, size),
                            "%.2f us vs %.2f us" % tuple(costs), "", None))
    return rows

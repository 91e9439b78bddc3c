"""5. What keeping many registrations alive from one process costs.

1,000 ``Registrar`` objects (TTL 5 s, heartbeat 1 s) in this process, first sharing one
``EtcdConnection`` (``Registrar(..., connection=conn)``), then each with its own.  Over a
steady window: CPU seconds used per wall second (``time.process_time``), etcd requests per
second (our calls, counted by wrapping ``EtcdConnection.call``, and etcd's own
``grpc_server_msg_received_total`` from its ``/metrics``), threads and RSS.
Target: at most one keepalive per lease per heartbeat.
"""

from __future__ import annotations

import collections
import gc
import time
from typing import Any, Callable

from common import Row, Settings, etcd_metrics, fmt_ms, new_domain, rss_bytes, thread_count

from hprose_cluster import Registrar, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection

TTL = 5
HEARTBEAT = 1.0


class CountingConnection(EtcdConnection):
    """An EtcdConnection that counts its requests by kind (the first word of ``what``)."""

    def __init__(self, config: EtcdConfig):
        super().__init__(config)
        self.counts: collections.Counter[str] = collections.Counter()

    def call(self, what: str, func: Callable[[Any], Any]) -> Any:
        self.counts[what.split(" ", 1)[0]] += 1
        return super().call(what, func)


def _received(metrics: dict[str, float]) -> dict[str, float]:
    prefix = "grpc_server_msg_received_total:"
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def _measure(label: str, count: int, shared: bool, etcd: str, metrics_url: str,
             window: float) -> list[Row]:
    config = EtcdConfig(endpoints=etcd)
    domain = new_domain("registrar")
    connection = CountingConnection(config) if shared else None
    gc.collect()
    threads_before, rss_before = thread_count(), rss_bytes()
    registrars = [Registrar(ServerInfo(domain, "tcp://127.3.%d.%d:9" % (i // 250, i % 250 + 1),
                                       cpu=1),
                            etcd=config, connection=connection, ttl=TTL, heartbeat=HEARTBEAT)
                  for i in range(count)]
    began = time.perf_counter()
    try:
        for registrar in registrars:
            registrar.start()
        start_s = time.perf_counter() - began
        time.sleep(HEARTBEAT * 1.5)  # let the heartbeats spread out
        calls_before = dict(connection.counts) if connection else {}
        etcd_before = _received(etcd_metrics(metrics_url))
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        time.sleep(window)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        etcd_after = _received(etcd_metrics(metrics_url))
        calls_after = dict(connection.counts) if connection else {}
        threads, rss = thread_count() - threads_before, rss_bytes() - rss_before
        alive = sum(1 for r in registrars if r.registered)
    finally:
        began_close = time.perf_counter()
        for registrar in registrars:
            registrar.close()
        close_s = time.perf_counter() - began_close
        if connection is not None:
            connection.close()
    per_s = {k: (v - etcd_before.get(k, 0.0)) / wall for k, v in etcd_after.items()}
    keepalives = per_s.get("LeaseKeepAlive", 0.0)
    total = sum(per_s.values())
    ours = ""
    if connection is not None:
        mine = {k: (v - calls_before.get(k, 0)) / wall for k, v in calls_after.items()}
        ours = "; our calls: %s" % ", ".join("%s %.0f/s" % (k, v) for k, v in sorted(mine.items())
                                             if v)
    per_lease_heartbeat = keepalives * HEARTBEAT / count
    return [
        Row("5. registrar", "%d registrars, %s: start-up, close" % (count, label),
            "%s (%s each), %s" % (fmt_ms(start_s), fmt_ms(start_s / count), fmt_ms(close_s)),
            "", None),
        Row("5. registrar", "%d registrars, %s: CPU while kept alive" % (count, label),
            "%.1f%% of a core (%d threads, %.0f MB RSS added, %d/%d registered)"
            % (100 * cpu / wall, threads, rss / 2**20, alive, count), "", None),
        Row("5. registrar", "%d registrars, %s: etcd requests" % (count, label),
            "%.0f/s in all, keepalives %.0f/s = %.2f per lease per heartbeat (%.1f s)%s%s"
            % (total, keepalives, per_lease_heartbeat, HEARTBEAT,
               "" if per_lease_heartbeat > 0.9 else
               " - FALLING BEHIND: each lease refreshed every %.1f s"
               % (HEARTBEAT / max(per_lease_heartbeat, 1e-9)), ours),
            "<= 1 keepalive / lease / heartbeat", per_lease_heartbeat <= 1.05,
            {"etcd_per_s": per_s}),
    ]


def registrar_cost(etcd: str, settings: Settings, metrics_url: str = "", **_: object) -> list[Row]:
    window = 3.0 if settings.quick else 10.0
    rows = _measure("one shared EtcdConnection", 1000, True, etcd, metrics_url, window)
    own = 100 if settings.quick else 250  # 1,000 own channels take minutes to open and close
    rows += _measure("one EtcdConnection each", own, False, etcd, metrics_url, window)
    return rows

"""3. How fast a client's view follows the registry.

- One at a time, ``settings.events`` times: ``Registrar.start()`` of a new record, then the
  moment a ``Discovery`` listener of the domain is told it was added; ``Registrar.close()``,
  then the moment the listener is told it was removed.  The clock starts *before* ``start()``
  (which grants a lease and puts the record) and before ``close()`` (which revokes the lease),
  so each figure is the whole path: our registrar, etcd, the watch, our discovery thread.
  The registrars share one ``EtcdConnection`` (as a process hosting many would), so the
  figure does not include opening a gRPC channel.
- A burst: 1,000 registrars started at once from 16 threads; the time until the client's view
  holds all of them, with the CPU this process and etcd spent meanwhile and etcd's disk
  syncs (the wall time of a burst is mostly those); and, separately, 1,000 records written
  in 10 transactions.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from common import Row, Settings, etcd_metrics, fmt_ms, new_domain, percentile

from hprose_cluster import Discovery, Registrar, ServerInfo
from hprose_cluster.etcd import EtcdConfig, EtcdConnection


class Watcher:
    """A Discovery listener that timestamps each add and remove, by UUID."""

    def __init__(self) -> None:
        self.added: dict[str, float] = {}
        self.removed: dict[str, float] = {}
        self.changed = threading.Condition()

    def __call__(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        now = time.perf_counter()
        with self.changed:
            for info in removed:
                self.removed[info.uuid] = now
            for info in added:
                self.added[info.uuid] = now
            self.changed.notify_all()

    def wait(self, table: dict[str, float], uuids: Any, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: all(u in table for u in uuids), timeout)


def _info(domain: str, i: int) -> ServerInfo:
    return ServerInfo(domain, "tcp://127.2.%d.%d:9" % (i // 250, i % 250 + 1), cpu=1)


def reaction(etcd: str, settings: Settings, metrics_url: str = "", **_: object) -> list[Row]:
    rows: list[Row] = []
    config = EtcdConfig(endpoints=etcd)
    domain = new_domain("reaction")
    with ExitStack() as stack:
        connection = stack.enter_context(EtcdConnection(config))
        discovery = stack.enter_context(Discovery(domain, etcd=config))
        watcher = Watcher()
        discovery.add_listener(watcher)
        ups, downs = [], []
        for i in range(settings.events):
            info = _info(domain, i)
            began = time.perf_counter()
            registrar = Registrar(info, connection=connection, ttl=10, heartbeat=3).start()
            try:
                if not watcher.wait(watcher.added, [info.uuid]):
                    raise RuntimeError("registration %d never reached the client" % i)
                ups.append(watcher.added[info.uuid] - began)
            finally:
                began = time.perf_counter()
                registrar.close()
            if not watcher.wait(watcher.removed, [info.uuid]):
                raise RuntimeError("deregistration %d never reached the client" % i)
            downs.append(watcher.removed[info.uuid] - began)
        for name, values in (("registration -> in the client's view", ups),
                             ("deregistration -> gone from the client's view", downs)):
            p99 = percentile(values, 99)
            rows.append(Row("3. reaction", "%s (%d events)" % (name, len(values)),
                            "p50 %s, p99 %s, max %s" % (fmt_ms(percentile(values, 50)),
                                                        fmt_ms(p99), fmt_ms(max(values))),
                            "p99 < 20 ms", p99 < 0.020, {"samples": values}))
        rows.extend(_burst(etcd, config, connection, stack, metrics_url))
    return rows


def _etcd_costs(metrics_url: str) -> tuple[float, float, float]:
    """etcd's CPU seconds, WAL syncs and seconds spent in them so far (zeros without a URL)."""
    if not metrics_url:
        return 0.0, 0.0, 0.0
    metrics = etcd_metrics(metrics_url)
    return (metrics.get("process_cpu_seconds_total", 0.0),
            metrics.get("etcd_disk_wal_fsync_duration_seconds_count", 0.0),
            metrics.get("etcd_disk_wal_fsync_duration_seconds_sum", 0.0))


def _burst(etcd: str, config: EtcdConfig, connection: EtcdConnection,
           stack: ExitStack, metrics_url: str = "", count: int = 1000) -> list[Row]:
    rows = []
    domain = new_domain("burst")
    discovery = stack.enter_context(Discovery(domain, etcd=config))
    infos = [_info(domain, i) for i in range(count)]
    registrars = [Registrar(info, connection=connection, ttl=10, heartbeat=3) for info in infos]
    etcd_before = _etcd_costs(metrics_url)
    cpu_before = time.process_time()
    began = time.perf_counter()
    with ThreadPoolExecutor(16, thread_name_prefix="bench-burst") as pool:
        try:
            list(pool.map(lambda r: r.start(), registrars))
            written = time.perf_counter()
            seen = discovery.wait_for_servers(30, count)
            all_seen = time.perf_counter()
            cpu = time.process_time() - cpu_before
            etcd_cpu, syncs, sync_s = (b - a for a, b in zip(etcd_before,
                                                            _etcd_costs(metrics_url)))
        finally:
            list(pool.map(lambda r: r.close(), registrars))
    if not seen:
        raise RuntimeError("the client never saw all %d registrations" % count)
    rows.append(Row("3. reaction", "burst: %d Registrar.start() from 16 threads -> client sees "
                                   "all" % count,
                    "%s (last start() returned at %s); this process %.2f s CPU, etcd %.2f s "
                    "CPU and %d disk syncs (%.2f s); load average %.1f"
                    % (fmt_ms(all_seen - began), fmt_ms(written - began), cpu, etcd_cpu,
                       syncs, sync_s, os.getloadavg()[0]),
                    "< 1 s", all_seen - began < 1.0))

    # The same burst as plain writes: what etcd and the client alone take.
    domain = new_domain("burst-txn")
    discovery = stack.enter_context(Discovery(domain, etcd=config))
    infos = [_info(domain, i) for i in range(count)]
    lease = connection.grant(60)
    try:
        began = time.perf_counter()
        for start in range(0, count, 100):
            chunk = infos[start:start + 100]
            connection.call("burst", lambda c, chunk=chunk: c.transaction(
                compare=[], failure=[],
                success=[c.transactions.put(i.key(config.prefix), i.to_json(), lease=lease)
                         for i in chunk]))
        written = time.perf_counter()
        seen = discovery.wait_for_servers(30, count)
        all_seen = time.perf_counter()
    finally:
        connection.revoke(lease)
    rows.append(Row("3. reaction", "burst: %d records in 10 transactions -> client sees all"
                    % count,
                    "%s (written at %s)" % (fmt_ms(all_seen - began), fmt_ms(written - began)),
                    "< 1 s", seen and all_seen - began < 1.0))
    return rows

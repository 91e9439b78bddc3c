"""The metric families of one registry: every name and label hprose-cluster exposes.

Made once per registry (``hprose_cluster.metrics.families()``); imported only when metrics
are on, as is every module of the package but ``__init__`` and ``scrape``.  Gauges read
through functions (servers in a view, age of the last event, registered) are evaluated at
scrape time and cost nothing between scrapes.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .client import ClientCollector, ClientMetrics

# RPC latencies are mostly well under 5 ms on a LAN: finer buckets at the low end than
# prometheus-client's defaults, up to the default call timeout of 30 s.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0)

SERVER_OUTCOMES = ("ok", "error")


class Families:
    """The Counter/Gauge/Histogram objects, and the per-domain recorders sharing them."""

    def __init__(self, registry: Any):
        self.registry = registry

        def counter(name: str, text: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, text, labels, registry=registry)

        def gauge(name: str, text: str, labels: tuple[str, ...], mode: str) -> Gauge:
            return Gauge(name, text, labels, registry=registry,
                         multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(name: str, text: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(name, text, labels, registry=registry, buckets=CALL_BUCKETS)

        # The client families are a collector of plain numbers: see metrics/client.py.
        self.clients = ClientCollector(CALL_BUCKETS)
        registry.register(self.clients)

        self.discovery_servers = gauge(
            "hprose_cluster_discovery_servers",
            "Servers in the domain as this process sees them.", ("domain",), "livemax")
        self.discovery_resyncs = counter(
            "hprose_cluster_discovery_resyncs_total",
            "Full re-reads of the domain after the first (compaction, replaced etcd, "
            "a count that disagreed).", ("domain",))
        self.discovery_watch_breaks = counter(
            "hprose_cluster_discovery_watch_breaks_total",
            "Watches of the domain that broke and were made again.", ("domain",))
        self.discovery_last_event_age = gauge(
            "hprose_cluster_discovery_last_event_age_seconds",
            "Seconds since etcd last confirmed the view (a watch response, a full read or "
            "the periodic check); the stalest view of the domain in this process.",
            ("domain",), "livemax")

        self.registrar_registered = gauge(
            "hprose_cluster_registrar_registered",
            "1 while the record is held in etcd (lease refreshed within its TTL), else 0.",
            ("domain", "uuid"), "livemax")
        self.registrar_registrations = counter(
            "hprose_cluster_registrar_registrations_total",
            "Times a record was written: the first registration and every re-registration.",
            ("domain",))
        self.registrar_refresh_failures = counter(
            "hprose_cluster_registrar_refresh_failures_total",
            "Heartbeats that did not keep the record alive: an etcd error, or a lease found "
            "gone.", ("domain",))

        self.server_requests = counter(
            "hprose_cluster_server_requests_total",
            "Requests served, by method and outcome: ok, error (answered with an hprose E "
            "reply).", ("domain", "method", "outcome"))
        self.server_in_flight = gauge(
            "hprose_cluster_server_in_flight",
            "Requests being executed now.", ("domain",), "livesum")
        self.server_request_seconds = histogram(
            "hprose_cluster_server_request_seconds",
            "Time from a request read to its reply ready.", ("domain", "method"))

        self._lock = threading.Lock()
        self._domains: dict[tuple[str, str], Any] = {}

    def client(self, domain: str) -> ClientMetrics:
        """The recorder of every client of ``domain`` (one per domain: its series are shared)."""
        return self.clients.domain(domain)

    def shared(self, kind: str, domain: str, make: Any) -> Any:
        """One object per (kind, domain), made by ``make()`` on first use."""
        with self._lock:
            found = self._domains.get((kind, domain))
            if found is None:
                found = self._domains[(kind, domain)] = make()
            return found

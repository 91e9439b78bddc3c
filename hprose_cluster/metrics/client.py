"""Client metrics: the per-call path, kept to about half a microsecond.

prometheus-client's ``Counter.inc()`` and ``Histogram.observe()`` take a lock each per value
(three for an observation) and cost ~2-3 us per call together on a small machine, which is
the whole budget.  So a client domain keeps plain numbers under one lock -- a successful call
is one ``bisect`` and one ``with lock:`` of dict/list additions -- and a collector registered
in the registry turns them into the ``hprose_cluster_client_*`` families at scrape time.

The price: these families are per process, so prometheus-client's multiprocess mode
(gunicorn workers) does not add them up across workers; every other family is a plain
prometheus-client metric and does.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ..errors import CallTimeout
from ..failover import Ejector

if TYPE_CHECKING:  # pragma: no cover
    from ..record import ServerInfo

CLIENT_OUTCOMES = ("ok", "error", "transport_error", "timeout")


class CountingEjector(Ejector):
    """An ``Ejector`` that reports each time a server *becomes* ejected (not every failure
    of a server already cooling down; a server ejected again after its cooldown counts
    again)."""

    def __init__(self, after: int, cooldown: float, on_eject: Callable[[str], None]):
        super().__init__(after, cooldown)
        self._on_eject = on_eject
        self._count_lock = threading.Lock()

    def failure(self, url: str, *args: Any, **kwargs: Any) -> None:
        with self._count_lock:
            before = self.is_ejected(url)
            super().failure(url, *args, **kwargs)
            ejected = not before and self.is_ejected(url)
        if ejected:
            self._on_eject(url)


class ClientMetrics:
    """The numbers of every client (``ClusterClient``, ``AsyncClusterClient``) of one domain
    in this process."""

    def __init__(self, domain: str, buckets: tuple[float, ...]):
        self.domain = domain
        self.buckets = buckets
        self._lock = threading.Lock()
        self.calls: dict[str, dict[str, int]] = {o: {} for o in CLIENT_OUTCOMES}
        self._ok = self.calls["ok"]
        self.ejections: dict[str, int] = {}
        self.counts = [0] * (len(buckets) + 1)  # per bucket (not cumulative); last is +Inf
        self.seconds = 0.0
        self.retries = 0
        self.no_servers = 0
        self.start = perf_counter  # the call's start time: an attribute, no Python frame

    def ok(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None:
        elapsed = perf_counter() - started
        bucket = bisect_left(self.buckets, elapsed)
        url = server.url
        with self._lock:
            counts = self._ok
            counts[url] = counts.get(url, 0) + 1
            self.counts[bucket] += 1
            self.seconds += elapsed
            if len(tried) > 1:
                self.retries += len(tried) - 1

    def error(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None:
        self._end("error", server.url, started, tried)

    def failed(self, server: "ServerInfo", error: BaseException) -> None:
        outcome = "timeout" if isinstance(error, CallTimeout) else "transport_error"
        with self._lock:
            counts = self.calls[outcome]
            counts[server.url] = counts.get(server.url, 0) + 1

    def raised(self, started: float, tried: Collection[str]) -> None:
        """The call ends with the transport error of its last attempt."""
        self._end(None, None, started, tried)

    def no_server(self, started: float, tried: Collection[str]) -> None:
        self._end(None, None, started, tried, no_server=True)

    def _end(self, outcome: str | None, url: str | None, started: float,
             tried: Collection[str], no_server: bool = False) -> None:
        elapsed = perf_counter() - started
        bucket = bisect_left(self.buckets, elapsed)
        with self._lock:
            if outcome is not None and url is not None:
                counts = self.calls[outcome]
                counts[url] = counts.get(url, 0) + 1
            self.counts[bucket] += 1
            self.seconds += elapsed
            if len(tried) > 1:
                self.retries += len(tried) - 1
            if no_server:
                self.no_servers += 1

    def ejector(self, after: int, cooldown: float) -> Ejector:
        return CountingEjector(after, cooldown, self._ejected)

    def _ejected(self, url: str) -> None:
        with self._lock:
            self.ejections[url] = self.ejections.get(url, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": {o: dict(c) for o, c in self.calls.items()},
                    "ejections": dict(self.ejections), "counts": list(self.counts),
                    "seconds": self.seconds, "retries": self.retries,
                    "no_servers": self.no_servers}


class ClientCollector:
    """Exposes the ``ClientMetrics`` of every domain as the ``hprose_cluster_client_*``
    families (registered once per registry)."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self._domains: dict[str, ClientMetrics] = {}
        self._lock = threading.Lock()

    def domain(self, domain: str) -> ClientMetrics:
        found = self._domains.get(domain)
        if found is None:
            with self._lock:
                found = self._domains.get(domain)
                if found is None:
                    found = self._domains[domain] = ClientMetrics(domain, self.buckets)
        return found

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        families = self._families()
        calls, seconds, retries, ejections, no_server = families
        with self._lock:
            domains = list(self._domains.values())
        for metrics in domains:
            d = metrics.domain
            data = metrics.snapshot()
            for outcome, by_url in data["calls"].items():
                for url, count in sorted(by_url.items()):
                    calls.add_metric([d, url, outcome], count)
            cumulative, total = [], 0
            for bound, count in zip(self.buckets + (float("inf"),), data["counts"]):
                total += count
                cumulative.append((floatToGoString(bound), total))
            seconds.add_metric([d], cumulative, data["seconds"])
            retries.add_metric([d], data["retries"])
            for url, count in sorted(data["ejections"].items()):
                ejections.add_metric([d, url], count)
            no_server.add_metric([d], data["no_servers"])
        return iter(families)

    @staticmethod
    def _families() -> list[Any]:
        return [
            CounterMetricFamily(
                "hprose_cluster_client_calls", "Attempts sent to a server, by outcome: ok, "
                "error (an hprose E reply), transport_error, timeout.",
                labels=["domain", "server", "outcome"]),
            HistogramMetricFamily(
                "hprose_cluster_client_call_seconds",
                "Duration of whole calls, failover included.", labels=["domain"]),
            CounterMetricFamily(
                "hprose_cluster_client_retries",
                "Attempts on another server after a failed one.", labels=["domain"]),
            CounterMetricFamily(
                "hprose_cluster_client_ejections",
                "Times a client started skipping a failing server.", labels=["domain", "server"]),
            CounterMetricFamily(
                "hprose_cluster_client_no_server",
                "Calls that ended with NoServerAvailable.", labels=["domain"]),
        ]

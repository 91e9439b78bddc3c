"""The recorders used when metrics are on: clients, discoveries, registrars.

A client's per-call path is what must stay cheap (under 3 us, see
benchmarks/bench_metrics.py): the labelled children are looked up once per server URL and
kept in plain dicts, so a call costs a dict lookup, one ``inc()`` and one ``observe()``.
Discovery and registrar gauges are functions read at scrape time.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Collection

from ..errors import CallTimeout
from ..failover import Ejector
from .names import CLIENT_OUTCOMES, Families
from .endpoint import multiprocess_mode

if TYPE_CHECKING:  # pragma: no cover
    from ..discovery import Discovery
    from ..record import ServerInfo
    from ..registrar import Registrar

_clock = time.perf_counter


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
    """The recorder of every ``ClusterClient`` of one domain in this process."""

    def __init__(self, families: Families, domain: str):
        self.domain = domain
        self._calls = families.client_calls
        self._ejections = families.client_ejections
        self._seconds = families.client_call_seconds.labels(domain)
        self._retries = families.client_retries.labels(domain)
        self._no_server = families.client_no_server.labels(domain)
        self._by_outcome: dict[str, dict[str, Any]] = {o: {} for o in CLIENT_OUTCOMES}
        self._ok = self._by_outcome["ok"]
        self.start = _clock  # the call's start time: an attribute, so no Python frame

    def _child(self, url: str, outcome: str) -> Any:
        children = self._by_outcome[outcome]
        child = children.get(url)
        if child is None:  # two threads may both get here: labels() returns the same child
            child = children[url] = self._calls.labels(self.domain, url, outcome)
        return child

    def ok(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None:
        elapsed = _clock() - started
        child = self._ok.get(server.url)
        if child is None:
            child = self._child(server.url, "ok")
        child.inc()
        self._seconds.observe(elapsed)
        if len(tried) > 1:
            self._retries.inc(len(tried) - 1)

    def error(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None:
        elapsed = _clock() - started
        self._child(server.url, "error").inc()
        self._seconds.observe(elapsed)
        if len(tried) > 1:
            self._retries.inc(len(tried) - 1)

    def failed(self, server: "ServerInfo", error: BaseException) -> None:
        outcome = "timeout" if isinstance(error, CallTimeout) else "transport_error"
        self._child(server.url, outcome).inc()

    def raised(self, started: float, tried: Collection[str]) -> None:
        """The call ends with the transport error of its last attempt."""
        self._seconds.observe(_clock() - started)
        if len(tried) > 1:
            self._retries.inc(len(tried) - 1)

    def no_server(self, started: float, tried: Collection[str]) -> None:
        self._no_server.inc()
        self.raised(started, tried)

    def ejector(self, after: int, cooldown: float) -> Ejector:
        return CountingEjector(after, cooldown, self._ejected)

    def _ejected(self, url: str) -> None:
        self._ejections.labels(self.domain, url).inc()


class _DomainViews:
    """The live discoveries of one domain in this process, read by the two function gauges
    (the largest view, the stalest confirmation); the series go when the last one closes."""

    def __init__(self, families: Families, domain: str):
        self._families = families
        self._domain = domain
        self._members: "weakref.WeakSet[DiscoveryMetrics]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def join(self, member: "DiscoveryMetrics") -> None:
        with self._lock:
            if not self._members:
                f = self._families
                f.discovery_servers.labels(self._domain).set_function(self._servers)
                f.discovery_last_event_age.labels(self._domain).set_function(self._age)
            self._members.add(member)

    def leave(self, member: "DiscoveryMetrics") -> None:
        with self._lock:
            self._members.discard(member)
            if not self._members and not multiprocess_mode():
                for family in (self._families.discovery_servers,
                               self._families.discovery_last_event_age):
                    try:
                        family.remove(self._domain)
                    except KeyError:
                        pass

    def _servers(self) -> float:
        counts = [member.servers() for member in list(self._members)]
        return float(max(counts)) if counts else 0.0

    def _age(self) -> float:
        now = time.monotonic()
        ages = [now - member.last_heard for member in list(self._members)]
        return max(ages) if ages else 0.0


class DiscoveryMetrics:
    """The recorder of one ``Discovery`` (``Discovery(None)``, every domain, is labelled
    ``domain="*"``)."""

    def __init__(self, families: Families, discovery: "Discovery"):
        domain = discovery.domain if discovery.domain is not None else "*"
        self._discovery = weakref.ref(discovery)
        self.last_heard = time.monotonic()
        self._resyncs = families.discovery_resyncs.labels(domain)
        self._breaks = families.discovery_watch_breaks.labels(domain)
        self._views: _DomainViews = families.shared(
            "discovery", domain, lambda: _DomainViews(families, domain))
        self._views.join(self)
        self._closed = False

    def servers(self) -> int:
        discovery = self._discovery()
        return 0 if discovery is None else len(discovery.view)

    def heard(self, resync: bool = False) -> None:
        self.last_heard = time.monotonic()
        if resync:
            self._resyncs.inc()

    def watch_broke(self) -> None:
        self._breaks.inc()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._views.leave(self)


class RegistrarMetrics:
    """The recorder of one ``Registrar``; its ``registered`` series goes when it closes."""

    def __init__(self, families: Families, registrar: "Registrar"):
        info = registrar.info
        self._families = families
        self._labels = (info.domain, info.uuid)
        ref = weakref.ref(registrar)

        def registered() -> float:
            current = ref()
            return 1.0 if current is not None and current.registered else 0.0

        families.registrar_registered.labels(*self._labels).set_function(registered)
        self._registrations = families.registrar_registrations.labels(info.domain)
        self._failures = families.registrar_refresh_failures.labels(info.domain)

    def registered(self) -> None:
        self._registrations.inc()

    def refresh_failed(self) -> None:
        self._failures.inc()

    def close(self) -> None:
        if multiprocess_mode():
            return
        try:
            self._families.registrar_registered.remove(*self._labels)
        except KeyError:
            pass

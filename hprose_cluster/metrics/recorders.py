"""The recorders of discoveries and registrars when metrics are on (clients: client.py).

Their gauges are functions read at scrape time: they cost nothing between scrapes.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

from .endpoint import multiprocess_mode
from .names import Families

if TYPE_CHECKING:  # pragma: no cover
    from ..discovery import Discovery
    from ..registrar import Registrar


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

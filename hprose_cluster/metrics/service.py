"""Server-side request metrics, for any hprose service object.

Every transport hands a request body to the service's ``_handle(data, context)`` and sends
back what it returns (hprose 1.4.3's dispatch turns any failure into an ``E`` reply), so one
wrapper on that method counts requests of HTTP, TCP and WSGI servers alike, without touching
their code.  The method label is read from the request bytes (``C`` then the name as an hprose
string) -- no decoding of the arguments.

Label values are bounded, as a client can send any name: a function the service has
registered is labelled with its registered name, a call of anything else ``(unknown)``, a
request that is not a call (the function list, a malformed body) ``(other)``.  A batch counts
as one request, under its first call's name.
"""

from __future__ import annotations

import logging
import threading
from time import perf_counter
from typing import Any

from .names import Families

log = logging.getLogger("hprose_cluster.metrics")

UNKNOWN = "(unknown)"
OTHER = "(other)"
_MARK = "_hprose_cluster_metrics"
_MAX_LABELS = 1000  # methods one service may label by name (a '*' handler takes any name)


def method_name(data: Any) -> str | None:
    """The name of the first call in an hprose request, or None if it is not a call."""
    if not isinstance(data, (bytes, bytearray)):
        return None
    head = data[:2]
    if head == b"Ce":
        return ""
    if head == b"Cu":  # a one-character string
        for size in (1, 2, 3, 4):
            try:
                return bytes(data[2:2 + size]).decode("utf-8")
            except UnicodeDecodeError:
                continue
        return None
    if head != b"Cs":
        return None
    quote = data.find(b'"', 2, 12)
    if quote < 0:
        return None
    try:
        units = int(data[2:quote]) if quote > 2 else 0  # hprose omits a length of 0
    except ValueError:
        return None
    start = quote + 1
    end = start + units
    raw = bytes(data[start:end])
    if raw.isascii() and data[end:end + 1] == b'"':
        return raw.decode("ascii")
    # Not ASCII: the length counts UTF-16 units, so find the quote where they add up.
    position = start
    while True:
        end = data.find(b'"', position, start + 4 * units + 1)
        if end < 0:
            return None
        try:
            text = bytes(data[start:end]).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(text.encode("utf-16-le")) // 2 == units:
            return text
        position = end + 1


class _Labels:
    """Request name -> method label, for one service (see the module docstring)."""

    def __init__(self, service: Any):
        self._service = service
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str | None) -> str:
        if name is None:
            return OTHER
        label = self._cache.get(name)
        if label is None:
            label = self._label(name)
            if label != UNKNOWN:  # a function added later must not stay unknown
                with self._lock:
                    if len(self._cache) < _MAX_LABELS:
                        self._cache[name] = label
        return label

    def _label(self, name: str) -> str:
        # hprose 1.4.3 keeps its functions in name-mangled dicts keyed by the lower-cased
        # name (names are case-insensitive), with the registered spelling alongside.
        names = getattr(self._service, "_HproseService__funcNames", None)
        if not isinstance(names, dict):
            return name if len(self._cache) < _MAX_LABELS else OTHER
        registered = names.get(name.lower())
        if registered is not None and registered != "*":
            return str(registered)
        if "*" in names and len(self._cache) < _MAX_LABELS:  # a missing-function handler
            return name
        return UNKNOWN


class _Series:
    """The children of one domain's server metrics, cached per method label."""

    def __init__(self, families: Families, domain: str):
        self._families = families
        self.domain = domain
        self.in_flight = families.server_in_flight.labels(domain)
        self._children: dict[str, tuple[Any, Any, Any]] = {}

    def children(self, method: str) -> tuple[Any, Any, Any]:
        found = self._children.get(method)
        if found is None:
            f = self._families
            found = self._children[method] = (
                f.server_requests.labels(self.domain, method, "ok"),
                f.server_requests.labels(self.domain, method, "error"),
                f.server_request_seconds.labels(self.domain, method))
        return found


def instrument(service: Any, families: Families, domain: str) -> None:
    """Wrap ``service._handle`` (once) so each request is counted under ``domain``."""
    original = getattr(service, "_handle", None)
    if original is None or not callable(original):
        log.warning("%r has no _handle(data, context): its requests are not counted", service)
        return
    if getattr(original, _MARK, False):
        return
    series: _Series = families.shared("server", domain, lambda: _Series(families, domain))
    labels = _Labels(service)
    in_flight = series.in_flight

    def handle(data: Any, context: Any) -> Any:
        ok, error, seconds = series.children(labels(method_name(data)))
        in_flight.inc()
        started = perf_counter()
        failed = True
        try:
            reply = original(data, context)
            failed = reply[:1] == b"E"
            return reply
        finally:
            in_flight.dec()
            seconds.observe(perf_counter() - started)
            (error if failed else ok).inc()

    setattr(handle, _MARK, True)
    setattr(service, "_handle", handle)


def instrumented(service: Any) -> bool:
    """Whether ``instrument()`` wrapped this service."""
    return bool(getattr(getattr(service, "_handle", None), _MARK, False))


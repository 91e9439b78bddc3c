"""Optional Prometheus metrics for clients, servers, registrars and discoveries.

With the ``metrics`` extra (``pip install hprose-cluster[metrics]``, i.e. ``prometheus-client``)
every ``ClusterClient``, ``ClusterServer``, ``Registrar`` and ``Discovery`` records into
prometheus-client's default registry; without it nothing changes and ``prometheus_client`` is
never imported.  The switch is process-wide and read when an object is created:

- ``enable(registry)`` records into ``registry`` from now on (default: prometheus-client's
  ``REGISTRY``); ``disable()`` makes the objects created from now on record nothing.
- ``serve(port, host)`` exposes a registry over HTTP (``/metrics``); the cluster servers do it
  themselves with ``metrics_port=`` (and ``metrics_host=``), and put the URL in their record as
  the optional ``Metrics`` field, which ``hprose-cluster top`` reads.
- ``instrument_service(service, domain)`` counts the requests of any hprose service (a WSGI
  app under gunicorn, say); ``child_exit(pid)`` is gunicorn's hook in multiprocess mode.

Each instrumented object holds a *recorder* chosen once, at creation: the no-op recorders
below when metrics are off (a call costs one method call that returns at once), the
prometheus-client ones of ``hprose_cluster.metrics.recorders`` when on.  The metric names and
labels are the contract; the README lists them with what each tells.
"""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Collection, Mapping, MutableMapping, Protocol

from ..errors import ConfigError
from ..failover import Ejector

if TYPE_CHECKING:  # pragma: no cover - names for type hints only
    from ..discovery import Discovery
    from ..record import ServerInfo
    from ..registrar import Registrar
    from .endpoint import Endpoint
    from .names import Families

log = logging.getLogger("hprose_cluster.metrics")

# The optional ``Metrics`` field of a registry record: the URL of the server's metrics.
RECORD_FIELD = "Metrics"

# --- the switch -------------------------------------------------------------------------------

_lock = threading.Lock()
_AUTO = object()           # not decided yet: prometheus-client's REGISTRY if it is installed
_registry: Any = _AUTO     # a CollectorRegistry, None (off) or _AUTO
_families: "weakref.WeakKeyDictionary[Any, Families]" = weakref.WeakKeyDictionary()


def enable(registry: Any = None) -> None:
    """Record into ``registry`` (a ``prometheus_client.CollectorRegistry``; default: its
    ``REGISTRY``) in every object created from now on.  ConfigError without the extra."""
    client = _import_client()
    if client is None:
        raise ConfigError("metrics need prometheus-client: pip install 'hprose-cluster[metrics]'")
    global _registry
    with _lock:
        _registry = client.REGISTRY if registry is None else registry


def disable() -> None:
    """Objects created from now on record nothing (those already made keep recording)."""
    global _registry
    with _lock:
        _registry = None


def enabled() -> bool:
    """Whether objects created now record metrics."""
    return current_registry() is not None


def current_registry() -> Any:
    """The registry new objects record into, or None when metrics are off."""
    global _registry
    with _lock:
        if _registry is _AUTO:
            client = _import_client()
            _registry = client.REGISTRY if client is not None else None
        return _registry


def _import_client() -> Any:
    """prometheus_client, imported on first need (never by ``import hprose_cluster``)."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        return None


def families() -> "Families | None":
    """The metric families of the current registry (made on first use), None when off."""
    registry = current_registry()
    if registry is None:
        return None
    with _lock:
        found = _families.get(registry)
        if found is None:
            from .names import Families
            found = _families[registry] = Families(registry)
        return found


# --- recorder interfaces and their no-op versions -------------------------------------------------

class ClientRecorder(Protocol):
    """What a client call reports (through ``CallAttempts``, for ``ClusterClient`` and
    ``AsyncClusterClient``): per attempt (``failed``) and per call (the rest)."""

    def start(self) -> float: ...
    def ok(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None: ...
    def error(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None: ...
    def failed(self, server: "ServerInfo", error: BaseException) -> None: ...
    def raised(self, started: float, tried: Collection[str]) -> None: ...
    def no_server(self, started: float, tried: Collection[str]) -> None: ...
    def ejector(self, after: int, cooldown: float) -> Ejector: ...


class DiscoveryRecorder(Protocol):
    def heard(self, resync: bool = False) -> None: ...
    def watch_broke(self) -> None: ...
    def close(self) -> None: ...


class RegistrarRecorder(Protocol):
    def registered(self) -> None: ...
    def refresh_failed(self) -> None: ...
    def close(self) -> None: ...


class ServerRecorder(Protocol):
    def listening(self) -> None: ...
    def record_fields(self) -> Mapping[str, Any]: ...
    def close(self) -> None: ...


class _NullClient:
    __slots__ = ()

    def start(self) -> float:
        return 0.0

    def ok(self, server: "ServerInfo", started: float, tried: Collection[str]) -> None:
        pass

    error = ok

    def failed(self, server: "ServerInfo", error: BaseException) -> None:
        pass

    def raised(self, started: float, tried: Collection[str]) -> None:
        pass

    no_server = raised

    def ejector(self, after: int, cooldown: float) -> Ejector:
        return Ejector(after, cooldown)


class _NullDiscovery:
    __slots__ = ()

    def heard(self, resync: bool = False) -> None:
        pass

    def watch_broke(self) -> None:
        pass

    def close(self) -> None:
        pass


class _NullRegistrar:
    __slots__ = ()

    def registered(self) -> None:
        pass

    def refresh_failed(self) -> None:
        pass

    def close(self) -> None:
        pass


class _NullServer:
    __slots__ = ()

    def listening(self) -> None:
        pass

    def record_fields(self) -> Mapping[str, Any]:
        return {}

    def close(self) -> None:
        pass


NULL_CLIENT = _NullClient()
NULL_DISCOVERY = _NullDiscovery()
NULL_REGISTRAR = _NullRegistrar()
NULL_SERVER = _NullServer()


# --- what the instrumented objects call ---------------------------------------------------------

def client_recorder(domain: str) -> ClientRecorder:
    found = families()
    return NULL_CLIENT if found is None else found.client(domain)


def discovery_recorder(discovery: "Discovery") -> DiscoveryRecorder:
    found = families()
    if found is None:
        return NULL_DISCOVERY
    from .recorders import DiscoveryMetrics
    return DiscoveryMetrics(found, discovery)


def registrar_recorder(registrar: "Registrar") -> RegistrarRecorder:
    found = families()
    if found is None:
        return NULL_REGISTRAR
    from .recorders import RegistrarMetrics
    return RegistrarMetrics(found, registrar)


def server_recorder(server: Any, host: str, options: MutableMapping[str, Any]) -> ServerRecorder:
    """For ``ClusterServer.__init__``: takes ``metrics_port``/``metrics_host`` out of the
    server's keyword ``options``, counts the server's requests, and (with a port) serves the
    metrics while the server serves."""
    port = options.pop("metrics_port", None)
    metrics_host = options.pop("metrics_host", None)
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):
        raise ConfigError("metrics_port must be a port number (0 picks a free one), got %r"
                          % (port,))
    found = families()
    if found is None:
        if port is not None:
            raise ConfigError("metrics_port=%r needs metrics on: pip install "
                              "'hprose-cluster[metrics]' (and no metrics.disable())" % (port,))
        return NULL_SERVER
    from .endpoint import ServerEndpoint
    from .service import instrument
    instrument(server, found, server.domain)
    return ServerEndpoint(server, port, metrics_host or host, found.registry)


def instrument_service(service: Any, domain: str) -> None:
    """Count the requests of an hprose service object (``requests_total``, ``in_flight``,
    ``request_seconds`` for ``domain``); a no-op when metrics are off or already done."""
    found = families()
    if found is not None:
        from .service import instrument
        instrument(service, found, domain)


def serve(port: int = 0, host: str = "127.0.0.1", registry: Any = None) -> "Endpoint":
    """Serve ``registry`` (default: the current one; in prometheus-client's multiprocess mode,
    every process's metrics) at ``http://host:port/metrics`` on a daemon thread until the
    returned endpoint's ``close()``.  For gunicorn: call it in the master (``when_ready``)."""
    from .endpoint import serve as serve_registry
    return serve_registry(port, host, registry)


def child_exit(pid: int) -> None:
    """gunicorn's ``child_exit`` hook in multiprocess mode: drop a dead worker's live gauges."""
    from .endpoint import mark_process_dead
    mark_process_dead(pid)


def metrics_url(info: "ServerInfo") -> str | None:
    """The metrics URL a record names (its optional ``Metrics`` field), if it is a usable one."""
    value = info.extra.get(RECORD_FIELD)
    if isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) < 2048:
        return value
    return None


__all__ = ["RECORD_FIELD", "child_exit", "current_registry", "disable", "enable", "enabled",
           "instrument_service", "metrics_url", "serve"]

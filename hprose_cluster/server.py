"""Servers that register themselves in a service domain while they serve.

``ClusterServer`` is a mixin over a transport server (``HttpServer``, ``TcpServer``, or any
class with the same small interface: ``listen()``, ``address``, ``url``, ``start(block)``,
``stop(drain_timeout)``, ``in_flight`` and the hooks ``_on_listening()``/``_before_stop()``).
It registers in etcd once the socket listens -- so a server is never advertised before it can
answer -- and deregisters first thing when it stops.  Stopping then waits ``drain_delay``
seconds, still serving, so that clients see the server leave before its connections close,
and finishes the calls in flight: a rolling restart costs clients no failed call.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Sequence

from .errors import ConfigError
from .etcd import EtcdConfig
from .record import (ServerInfo, new_uuid, usable_cpus, validate_cpu, validate_domain,
                     validate_uuid)
from .registrar import DEFAULT_HEARTBEAT, DEFAULT_TTL, Registrar
from .transport.http import HttpServer
from .transport.tcp import TcpServer
from .transport.unix import UnixServer

log = logging.getLogger("hprose_cluster.server")

_WILDCARDS = ("", "0.0.0.0", "::")


def outbound_host() -> str:
    """This host's address as others would reach it, for servers bound to a wildcard.

    Taken from the host name's addresses (no packet is sent); loopback when nothing better.
    """
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


class ClusterServer:
    """Mixin: ``class MyServer(ClusterServer, SomeTransportServer)``.

    ``advertise_url`` overrides the URL put in the registry (behind NAT or a proxy); else it
    is built from the bound address (port 0 gives the real port; a wildcard bind advertises
    this host's outbound address).  ``cpu`` defaults to the usable core count.
    """

    def __init__(self, domain: str, host: str = "127.0.0.1", port: int = 0, *,
                 etcd: EtcdConfig | str | Sequence[str] | None = None,
                 advertise_url: str | None = None, ttl: int = DEFAULT_TTL,
                 heartbeat: float = DEFAULT_HEARTBEAT, uuid: str | None = None,
                 cpu: int | None = None, drain_delay: float = 0.5, **server_options: Any):
        self.domain = validate_domain(domain)
        self.uuid = validate_uuid(uuid) if uuid is not None else new_uuid()
        self.etcd_config = EtcdConfig.coerce(etcd)
        self.advertise_url = advertise_url
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.cpu = usable_cpus() if cpu is None else validate_cpu(cpu)
        if drain_delay < 0:
            raise ConfigError("drain_delay must be >= 0, got %r" % (drain_delay,))
        self.drain_delay = drain_delay
        self.registrar: Registrar | None = None
        super().__init__(host, port, **server_options)  # type: ignore[call-arg]
        if advertise_url is not None:
            ServerInfo(self.domain, advertise_url, self.uuid, self.cpu)  # validate now

    @property
    def url(self) -> str:
        """The URL clients are given: ``advertise_url``, else the bound address."""
        if self.advertise_url is not None:
            return self.advertise_url
        bound = super().url  # type: ignore[misc]
        address = getattr(self, "address", None)
        host = address[0] if address else None
        if host in _WILDCARDS:
            return bound.replace("[::]" if host == "::" else (host or "0.0.0.0"),
                                 outbound_host(), 1)
        return bound

    @property
    def info(self) -> ServerInfo:
        return ServerInfo(self.domain, self.url, self.uuid, self.cpu)

    def _on_listening(self) -> None:
        self.registrar = Registrar(self.info, etcd=self.etcd_config, ttl=self.ttl,
                                   heartbeat=self.heartbeat).start()
        log.info("%s serves domain %r as %s", self.url, self.domain, self.uuid)

    def _before_stop(self) -> None:
        registrar, self.registrar = self.registrar, None
        if registrar is None:
            return
        registrar.close()
        log.info("%s left domain %r; draining", self.url, self.domain)
        if self.drain_delay:
            time.sleep(self.drain_delay)

    def drain(self, timeout: float = 10.0) -> None:
        """Leave the registry, finish the calls in flight (up to ``timeout``), then stop."""
        self.stop(drain_timeout=timeout)  # type: ignore[attr-defined]


class ClusterHttpServer(ClusterServer, HttpServer):
    """An hprose HTTP service on threads that registers in ``domain`` while it serves."""


class ClusterTcpServer(ClusterServer, TcpServer):
    """An hprose TCP service on threads that registers in ``domain`` while it serves."""


class ClusterUnixServer(ClusterServer, UnixServer):
    """An hprose service on a unix socket that registers ``unix:/path`` in ``domain``
    (``path=None``: a socket in a new temporary folder)."""

    def __init__(self, domain: str, path: str | None = None, **options: Any):
        super().__init__(domain, path or "", 0, **options)


_lazy_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """``ClusterWebSocketServer``, made on first use: it needs the optional ``websockets``
    package (the ``websocket`` extra), which the other servers do not."""
    if name != "ClusterWebSocketServer":
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    with _lazy_lock:
        made = globals().get(name)
        if made is None:
            from .transport.websocket import WebSocketServer

            class ClusterWebSocketServer(ClusterServer, WebSocketServer):
                """An hprose WebSocket service (plain HTTP too, on the same port) on threads
                that registers ``ws://host:port/`` (``wss://`` with an ``ssl_context``) in
                ``domain`` while it serves."""

            ClusterWebSocketServer.__module__ = __name__
            ClusterWebSocketServer.__qualname__ = name
            globals()[name] = made = ClusterWebSocketServer
        return made

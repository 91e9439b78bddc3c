"""ClusterClient: a drop-in hprose client whose target is a service domain, not a URL.

``ClusterClient("tcp.hello.server").hello("world")`` reads the domain's servers from etcd once,
follows them with a watch (``Discovery``), and sends each call to the server its selector picks
(by default one random primary, as the hprose Go client did).  Choosing a server is an in-memory
read, never an etcd round trip.  Failures follow the client's ``FailoverPolicy``.

The target is chosen per call, in local variables, so one client is safe to share between
threads.  Transports (connection pools) are kept per server URL and created on first use.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Sequence

from hprose.common import HproseException

from . import metrics
from .attempts import CallAttempts
from .deadline import Deadline
from .discovery import Discovery
from .errors import ConfigError, TransportError
from .etcd import EtcdConfig
from .failover import FailoverPolicy
from .record import ServerInfo, validate_domain
from .selector import Selector, make_selector
from .transport import BaseClient, Transport, open_transport

log = logging.getLogger("hprose_cluster.client")

RETIRE_GRACE = 60.0
"""Seconds a retired transport's busy connections may stay open for their calls."""


class ClusterClient(BaseClient):
    """An hprose client for every server of ``domain``.

    ``etcd``: endpoints (``"host:port,..."``, URLs, a list) or an ``EtcdConfig``; default from
    ``HPROSE_CLUSTER_ETCD``, else 127.0.0.1:2379.  ``selector``: ``"random"`` (a sticky random
    primary), ``"round-robin"``, ``"weighted"`` (by CPU), or an object with ``pick``/``failed``.
    ``failover``: a ``FailoverPolicy``; ``idempotent=True`` is a shortcut that marks every call
    idempotent.  ``discovery``: share one started ``Discovery`` between clients of a domain (it
    is then not closed with the client).  ``ssl_context`` is used for ``https://`` servers
    and TLS TCP servers (``tcps://``, ``tcp4s://``, ``tcp6s://``, ``tls://``; default: the
    system's trust store); ``tcp_tls=True`` uses TLS for the domain's plain ``tcp://``
    servers too (what a Go client does with a TLS config; servers that Go clients also call
    advertise ``tcp://``).  ``full_duplex`` and ``pool_size`` are for TCP servers.
    ``snapshot_dir`` (default ``$HPROSE_CLUSTER_SNAPSHOT_DIR``) keeps a copy of the domain on disk, so the client can
    start and call while etcd cannot be reached (see ``Discovery``).
    """

    def __init__(self, domain: str, *, etcd: EtcdConfig | str | Sequence[str] | None = None,
                 selector: "str | Selector" = "random", failover: FailoverPolicy | None = None,
                 idempotent: bool | None = None, timeout: float | None = 30.0,
                 discovery: Discovery | None = None, ssl_context: Any = None,
                 full_duplex: bool = False, pool_size: int | None = None,
                 tcp_tls: bool = False, check_interval: float = 5.0,
                 snapshot_dir: "str | os.PathLike[str] | None" = None):
        super().__init__(timeout=timeout)
        domain = validate_domain(domain)  # a client calls one domain (Discovery(None) follows all)
        policy = failover or FailoverPolicy()
        if idempotent is not None:
            policy = dataclasses.replace(policy, idempotent=idempotent)
        self.failover = policy
        self.selector = make_selector(selector)
        self._metrics = metrics.client_recorder(domain)
        self.ejector = self._metrics.ejector(policy.eject_after, policy.eject_for)
        self._transport_options = {"ssl_context": ssl_context, "full_duplex": full_duplex,
                                   "pool_size": pool_size, "tcp_tls": tcp_tls}
        self._transports: dict[str, Transport] = {}
        self._retired: list[tuple[float, Transport]] = []  # (when, transport)
        self._lock = threading.Lock()
        self._closed = False
        self._owns_discovery = discovery is None
        if discovery is None:
            discovery = Discovery(domain, etcd=etcd, check_interval=check_interval,
                                  snapshot_dir=snapshot_dir).start()
        elif discovery.domain != domain:
            raise ConfigError("ClusterClient for domain %r was given the Discovery of domain %r"
                              % (domain, discovery.domain))
        self.discovery = discovery
        self.domain = discovery.domain
        discovery.add_listener(self._on_change)

    # --- views ----------------------------------------------------------------------------

    def servers(self) -> tuple[ServerInfo, ...]:
        """The domain's servers as this client sees them now."""
        return self.discovery.servers()

    @property
    def primary(self) -> ServerInfo | None:
        """The current primary (random selector only), else None."""
        return getattr(self.selector, "primary", None)

    # --- the call -------------------------------------------------------------------------

    def _invoke(self, name: str, args: list, byref: bool, result_mode: int, simple: bool,
                **options: Any) -> Any:
        timeout = options.pop("timeout", self.timeout)
        idempotent = options.pop("idempotent", None)
        if options:
            raise TypeError("unknown call option(s): %s" % ", ".join(sorted(options)))
        request = self._encode(name, args, byref, simple)
        attempts = CallAttempts(name, self.failover, self.selector, self.ejector,
                                domain=self.domain, idempotent=idempotent,
                                deadline=Deadline(timeout), first_view=self.discovery.view,
                                metrics=self._metrics)
        try:
            while True:
                if attempts.out_of_time:  # one deadline for the whole call
                    raise attempts.timed_out(self._where(), self.discovery.view)
                server = attempts.pick(self.discovery.view)
                if server is None and attempts.may_wait(self.discovery.view):
                    server = self._wait_for_server(attempts)
                if server is None:
                    raise attempts.exhausted(self._where(), self.discovery.view)
                attempts.begin(server)
                try:
                    reply = self._transport(server.url).round_trip(
                        request, attempts.attempt_deadline())
                except TransportError as error:
                    delay = attempts.failed(server, error)
                    if delay is None:
                        raise
                    if delay:
                        time.sleep(delay)
                    continue
                attempts.succeeded(server)
                try:
                    result = self._decode(reply, args, result_mode)
                except HproseException:
                    attempts.business_error(server)
                    raise
                attempts.returned(server)
                return result
        except BaseException:
            attempts.abandoned()  # ended already, or by what the loop did not expect
            raise

    def _wait_for_server(self, attempts: CallAttempts) -> ServerInfo | None:
        """No untried server (etcd just expired every lease, say), and waiting is safe
        (``attempts.may_wait``): wait, within the call's deadline, for one to appear."""
        until = time.monotonic() + attempts.wait_budget()
        while not self._closed:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            # short waits, so a client closed meanwhile does not hold its callers
            if self.discovery.wait_for(attempts.has_untried, min(remaining, 0.25)):
                server = attempts.pick(self.discovery.view)
                if server is not None:
                    return server
        return None

    def _where(self) -> str:
        return "domain %r (etcd %s)" % (self.domain, self.discovery.config.describe())

    def _transport(self, url: str) -> Transport:
        transport = self._transports.get(url)
        if transport is not None:
            return transport
        with self._lock:
            transport = self._transports.get(url)
            if transport is None:
                transport = open_transport(url, **self._transport_options)
                self._transports[url] = transport
            return transport

    def _on_change(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        """Servers that left the view: retire their transports.  A retired transport closes
        its idle connections now and the others as their calls end, since a server may leave
        the view while alive (etcd expired its lease during a pause; it registers again) and
        its calls in flight must not fail.  One still busy ``RETIRE_GRACE`` seconds later (a
        call without timeout) is closed at the next change."""
        if not removed and not self._retired:
            return
        current = {s.url for s in self.discovery.servers()}
        now = time.monotonic()
        retiring: list[Transport] = []
        with self._lock:
            for info in removed:
                if info.url not in current:
                    transport = self._transports.pop(info.url, None)
                    if transport is not None:
                        retiring.append(transport)
                        self._retired.append((now, transport))
                    self.ejector.forget(info.url)
            expired = [t for when, t in self._retired if now - when >= RETIRE_GRACE]
            if expired:
                self._retired = [(w, t) for w, t in self._retired if now - w < RETIRE_GRACE]
        for transport in retiring:
            retire = getattr(transport, "retire", None)
            if retire is not None:
                retire()
        for transport in expired:
            transport.close()

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following the domain and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            transports = list(self._transports.values()) + [t for _, t in self._retired]
            self._transports.clear()
            self._retired = []
        try:
            self.discovery.remove_listener(self._on_change)
        except ValueError:
            pass
        if self._owns_discovery:
            self.discovery.close()
        for transport in transports:
            transport.close()

    def __repr__(self) -> str:
        return "<ClusterClient %r: %d servers>" % (self.domain, len(self.discovery.servers()))

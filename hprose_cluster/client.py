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
import threading
import time
from typing import Any, Sequence

from hprose.common import HproseException

from .deadline import Deadline
from .discovery import Discovery
from .errors import ConfigError, NoServerAvailable, TransportError
from .etcd import EtcdConfig
from .failover import Ejector, FailoverPolicy
from .record import ServerInfo, validate_domain
from .selector import Selector, make_selector
from .transport import BaseClient, Transport, open_transport

log = logging.getLogger("hprose_cluster.client")


class ClusterClient(BaseClient):
    """An hprose client for every server of ``domain``.

    ``etcd``: endpoints (``"host:port,..."``, URLs, a list) or an ``EtcdConfig``; default from
    ``HPROSE_CLUSTER_ETCD``, else 127.0.0.1:2379.  ``selector``: ``"random"`` (a sticky random
    primary), ``"round-robin"``, ``"weighted"`` (by CPU), or an object with ``pick``/``failed``.
    ``failover``: a ``FailoverPolicy``; ``idempotent=True`` is a shortcut that marks every call
    idempotent.  ``discovery``: share one started ``Discovery`` between clients of a domain (it
    is then not closed with the client).  ``ssl_context`` is used for ``https://`` servers;
    ``full_duplex`` and ``pool_size`` for ``tcp://`` servers.
    """

    def __init__(self, domain: str, *, etcd: EtcdConfig | str | Sequence[str] | None = None,
                 selector: "str | Selector" = "random", failover: FailoverPolicy | None = None,
                 idempotent: bool | None = None, timeout: float | None = 30.0,
                 discovery: Discovery | None = None, ssl_context: Any = None,
                 full_duplex: bool = False, pool_size: int | None = None,
                 check_interval: float = 5.0):
        super().__init__(timeout=timeout)
        domain = validate_domain(domain)  # a client calls one domain (Discovery(None) follows all)
        policy = failover or FailoverPolicy()
        if idempotent is not None:
            policy = dataclasses.replace(policy, idempotent=idempotent)
        self.failover = policy
        self.selector = make_selector(selector)
        self.ejector = Ejector(policy.eject_after, policy.eject_for)
        self._transport_options = {"ssl_context": ssl_context, "full_duplex": full_duplex,
                                   "pool_size": pool_size}
        self._transports: dict[str, Transport] = {}
        self._retired: list[Transport] = []
        self._lock = threading.Lock()
        self._closed = False
        self._owns_discovery = discovery is None
        if discovery is None:
            discovery = Discovery(domain, etcd=etcd, check_interval=check_interval).start()
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
        policy = self.failover
        if idempotent is None:
            idempotent = policy.idempotent
        request = self._encode(name, args, byref, simple)
        tried: set[str] = set()
        failures: list[tuple[ServerInfo, TransportError]] = []
        for attempt in range(policy.max_attempts):
            server = self.selector.pick(self.discovery.view, tried, self.ejector)
            if server is None and not failures:
                wait = policy.wait_for_server if timeout is None \
                    else min(timeout, policy.wait_for_server)
                server = self._wait_for_server(tried, time.monotonic() + wait)
            if server is None:
                break
            tried.add(server.uuid)
            try:
                reply = self._transport(server.url).round_trip(request, Deadline(timeout))
            except TransportError as error:
                self.ejector.failure(server.url, certain=not error.sent)
                self.selector.failed(server)
                failures.append((server, error))
                if not policy.may_retry(error, idempotent):
                    raise
                log.info("call %s on %s failed (%s); trying another server of %r",
                         name, server.url, error, self.domain)
                delay = policy.delay(attempt)
                if delay:
                    time.sleep(delay)
                continue
            self.ejector.success(server.url)
            try:
                return self._decode(reply, args, result_mode)
            except HproseException:
                if policy.rotate_on_error:
                    self.selector.failed(server)
                raise
        raise self._no_server(name, failures)

    def _wait_for_server(self, tried: set[str], deadline: float) -> ServerInfo | None:
        """The view had no server to try before the first attempt (etcd just expired every
        lease, say): wait until ``deadline`` for one to appear, since nothing was sent yet.
        A call whose servers all failed does not wait: it fails at once with the causes."""
        untried = lambda view: any(s.uuid not in tried for s in view.servers)  # noqa: E731
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # short waits, so a client closed meanwhile does not hold its callers
            if self.discovery.wait_for(untried, min(remaining, 0.25)):
                server = self.selector.pick(self.discovery.view, tried, self.ejector)
                if server is not None:
                    return server
        return None

    def _no_server(self, name: str, failures: list[tuple[ServerInfo, TransportError]]) -> NoServerAvailable:
        where = "domain %r (etcd %s)" % (self.domain, self.discovery.config.describe())
        if not failures:
            error = NoServerAvailable("no server available for %s in %s" % (name, where))
            return error
        tried = "; ".join("%s: %s" % (server.url, error) for server, error in failures)
        error = NoServerAvailable("call %s failed on every server tried in %s: %s"
                                  % (name, where, tried))
        error.__cause__ = failures[-1][1]
        return error

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
        """Servers that left: retire their connections (closed at the next change, so calls
        still in flight on a draining server can finish)."""
        if not removed and not self._retired:
            return
        current = {s.url for s in self.discovery.servers()}
        with self._lock:
            to_close, self._retired = self._retired, []
            for info in removed:
                if info.url not in current:
                    transport = self._transports.pop(info.url, None)
                    if transport is not None:
                        self._retired.append(transport)
                    self.ejector.forget(info.url)
        for transport in to_close:
            transport.close()

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following the domain and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            transports = list(self._transports.values()) + self._retired
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

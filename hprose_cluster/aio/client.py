"""AsyncClusterClient: ``ClusterClient`` for asyncio code.

``await client.hello("world")`` reaches a server of the domain without a thread per call: the
transports run on the event loop (full-duplex TCP, keep-alive HTTP, WebSocket), so thousands of
calls can be in flight on a few connections, and cancelling a call (``task.cancel()``,
``asyncio.timeout``) ends it at once without harming the others.

Everything else is the blocking client's: the same ``FailoverPolicy``, selectors, ejection,
client metrics and error types, driven through the same ``CallAttempts``.  The domain is
followed by the same ``Discovery``: its watch runs on etcd's threads, a call reads the current
view in memory, and view changes reach the loop through ``call_soon_threadsafe``.  One ``Discovery`` may be shared
by blocking and asyncio clients of a domain.  The blocking parts (the first etcd read, closing
the watch) run on short-lived threads of their own, never on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any, Sequence

from hprose.common import HproseException, HproseResultMode

from .. import metrics
from ..attempts import CallAttempts
from ..client import RETIRE_GRACE
from ..deadline import Deadline
from ..discovery import Discovery
from ..errors import ConfigError, HproseClusterError, TransportError
from ..etcd import EtcdConfig
from ..failover import FailoverPolicy
from ..record import ServerInfo, validate_domain
from ..selector import Selector, make_selector
from ..transport.base import _Method, _Proxy, decode_reply, encode_request
from .base import AsyncTransport, in_thread, open_async_transport

log = logging.getLogger("hprose_cluster.aio.client")

__all__ = ["AsyncClusterClient"]

_RETIRED_POLL = 0.05  # seconds between looks at a retired transport's calls in flight


class AsyncClusterClient:
    """An asyncio hprose client for every server of ``domain``.

    The arguments are ``ClusterClient``'s: ``etcd`` (endpoints or an ``EtcdConfig``),
    ``selector``, ``failover`` (``FailoverPolicy``), ``idempotent``, ``timeout`` (the whole
    call, failover included; None: no limit), ``discovery`` (a shared ``Discovery``, started
    or not; it is not closed with the client), ``ssl_context`` (``https://``, ``wss://``
    and the TLS TCP schemes ``tcps://``, ``tcp4s://``, ``tcp6s://``, ``tls://``), ``tcp_tls``
    (TLS for plain ``tcp://`` servers too), ``check_interval``, ``simple``.  ``connections``: full-duplex connections
    per ``tcp://``/``ws://`` server (default 1), most connections at once per ``http://``
    server (default 32).

    ``async with AsyncClusterClient(...) as client`` (or ``await client.start()``) reads the
    domain; a first call starts it too.  ``await client.aclose()`` closes every connection
    and stops following the domain.  Use a client from the event loop it started on.
    """

    CALL_OPTIONS = ("timeout", "idempotent")

    def __init__(self, domain: str, *, etcd: EtcdConfig | str | Sequence[str] | None = None,
                 selector: "str | Selector" = "random", failover: FailoverPolicy | None = None,
                 idempotent: bool | None = None, timeout: float | None = 30.0,
                 discovery: Discovery | None = None, ssl_context: Any = None,
                 connections: int | None = None, connect_timeout: float = 5.0,
                 check_interval: float = 5.0, simple: bool = False, tcp_tls: bool = False):
        domain = validate_domain(domain)
        policy = failover or FailoverPolicy()
        if idempotent is not None:
            policy = dataclasses.replace(policy, idempotent=idempotent)
        if timeout is not None and (isinstance(timeout, bool) or timeout <= 0):
            raise ConfigError("timeout must be a number of seconds > 0 or None, not %r"
                              % (timeout,))
        self.failover = policy
        self.selector = make_selector(selector)
        self._metrics = metrics.client_recorder(domain)
        self.ejector = self._metrics.ejector(policy.eject_after, policy.eject_for)
        self.timeout = timeout
        self.simple = simple
        self._filters: list[Any] = []
        self._transport_options: dict[str, Any] = {
            "ssl_context": ssl_context, "connections": connections,
            "connect_timeout": connect_timeout, "tcp_tls": tcp_tls}
        self._owns_discovery = discovery is None
        if discovery is None:
            discovery = Discovery(domain, etcd=etcd, check_interval=check_interval)
        elif discovery.domain != domain:
            raise ConfigError("AsyncClusterClient for domain %r was given the Discovery of "
                              "domain %r" % (domain, discovery.domain))
        self.discovery = discovery
        self.domain = domain
        self._transports: dict[str, AsyncTransport] = {}
        self._retired: list[AsyncTransport] = []
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._starting: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._closed = False
        self._lifecycle = threading.Lock()  # the blocking start and close, one at a time

    # --- views ----------------------------------------------------------------------------

    def servers(self) -> tuple[ServerInfo, ...]:
        """The domain's servers as this client sees them now."""
        return self.discovery.servers()

    @property
    def primary(self) -> ServerInfo | None:
        """The current primary (random selector only), else None."""
        return getattr(self.selector, "primary", None)

    async def wait_for_servers(self, timeout: float | None = None, count: int = 1) -> bool:
        """Wait until the domain has at least ``count`` servers; False after ``timeout``
        (``Discovery.wait_for_servers``, without blocking the loop)."""
        await self.start()
        try:
            async with asyncio.timeout(timeout):
                while len(self.discovery.view) < count:
                    await self._view_change()
        except TimeoutError:
            return False
        return True

    # --- hprose surface -------------------------------------------------------------------

    def __getattr__(self, name: str) -> _Method:
        """``await client.hello("x")`` calls ``hello``; ``client.a.b()`` calls ``a_b``."""
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self.invoke, name)

    def useService(self, uri: str | None = None) -> _Proxy:  # noqa: N802 - hprose's name
        """A proxy whose attributes are remote methods (``uri`` is accepted and ignored)."""
        return _Proxy(self.invoke)

    def addFilter(self, _filter: Any) -> None:  # noqa: N802 - hprose's name
        """An hprose filter: ``outputFilter(request, client)`` before sending,
        ``inputFilter(reply, client)`` after, as with the blocking clients."""
        self._filters.append(_filter)

    def removeFilter(self, _filter: Any) -> None:  # noqa: N802 - hprose's name
        self._filters.remove(_filter)

    async def invoke(self, name: str, args: Sequence[Any] = (), *, byref: bool = False,
                     resultMode: int = HproseResultMode.Normal,  # noqa: N803 - hprose's name
                     simple: bool | None = None, **options: Any) -> Any:
        """Call ``name`` remotely and return its result.

        ``byref=True``: the server's new values of the arguments are written back into
        ``args`` when it is a list.  Options: ``timeout=`` (seconds for this call, failover
        included), ``idempotent=`` (may be repeated on another server after it was sent).
        An hprose ``E`` reply raises ``HproseException``; a call no server could take raises
        ``NoServerAvailable`` (or the ``TransportError`` of a call that may not be repeated).
        """
        unknown = [key for key in options if key not in self.CALL_OPTIONS]
        if unknown:
            raise TypeError("%s.invoke() got unknown call option(s) %s (allowed: %s)"
                            % (type(self).__name__, ", ".join(map(repr, sorted(unknown))),
                               ", ".join(self.CALL_OPTIONS)))
        if not self._started:
            await self.start()
        elif self._closed:
            raise self._closed_error()
        if asyncio.get_running_loop() is not self._loop:
            raise HproseClusterError("AsyncClusterClient for domain %r is used from another "
                                     "event loop than the one it started on" % self.domain)
        values = list(args)
        request = encode_request(name, values, byref, self.simple if simple is None else simple)
        for _filter in self._filters:
            request = _filter.outputFilter(request, self)
        timeout = options.get("timeout", self.timeout)
        attempts = CallAttempts(name, self.failover, self.selector, self.ejector,
                                domain=self.domain, idempotent=options.get("idempotent"),
                                deadline=Deadline(timeout), first_view=self.discovery.view,
                                metrics=self._metrics)
        try:
            while True:
                if self._closed:  # aclose() ran during the call: no new connection
                    error = self._closed_error()
                    if attempts.failures:
                        raise error from attempts.failures[-1][1]
                    raise error
                if attempts.out_of_time:  # the whole call shares one deadline
                    raise attempts.timed_out(self._where(), self.discovery.view)
                server = attempts.pick(self.discovery.view)
                if server is None and attempts.may_wait(self.discovery.view):
                    server = await self._wait_for_server(attempts)
                if server is None:
                    raise attempts.exhausted(self._where(), self.discovery.view)
                attempts.begin(server)
                try:
                    reply = await self._transport(server.url).round_trip(
                        request, attempts.attempt_deadline())
                except TransportError as error:
                    delay = attempts.failed(server, error)
                    if delay is None:
                        raise
                    if delay:
                        await asyncio.sleep(delay)
                    continue
                attempts.succeeded(server)
                for _filter in reversed(self._filters):
                    reply = _filter.inputFilter(reply, self)
                try:
                    result = decode_reply(reply, values, resultMode)
                except HproseException:
                    attempts.business_error(server)
                    raise
                attempts.returned(server)
                if byref and isinstance(args, list):
                    args[:len(values)] = values
                return result
        except BaseException:
            attempts.abandoned()  # closed, cancelled, a filter's error; or ended already
            raise

    def _where(self) -> str:
        return "domain %r (etcd %s)" % (self.domain, self.discovery.config.describe())

    async def _wait_for_server(self, attempts: CallAttempts) -> ServerInfo | None:
        """No untried server, and waiting is safe (``attempts.may_wait``: nothing sent, or
        the last attempt sent nothing and the view is moving; etcd just expired every lease,
        say): wait, within the call's deadline, for one to appear."""
        try:
            async with asyncio.timeout(attempts.wait_budget()):
                while not self._closed:
                    waiter = self._view_change()  # before reading the view: no change missed
                    if attempts.has_untried(self.discovery.view):
                        server = attempts.pick(self.discovery.view)
                        if server is not None:
                            waiter.close()
                            return server
                    await waiter
        except TimeoutError:
            pass
        return None

    def _view_change(self) -> Any:
        """A coroutine that returns at the next view change (or when the client closes)."""
        assert self._changed is not None
        return self._changed.wait()

    # --- transports -----------------------------------------------------------------------

    def _transport(self, url: str) -> AsyncTransport:
        transport = self._transports.get(url)
        if transport is None:
            transport = open_async_transport(url, **self._transport_options)
            self._transports[url] = transport
        return transport

    def _on_change_threadsafe(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        """The Discovery listener (on the discovery thread): hand the change to the loop."""
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            loop.call_soon_threadsafe(self._on_change, removed)
        except RuntimeError:  # the loop was closed without aclose()
            pass

    def _on_change(self, removed: list[ServerInfo]) -> None:
        """On the loop: wake the calls waiting for a server, and retire the transports of
        servers that left.  A retired transport is closed once no call is in flight on it
        (at most ``RETIRE_GRACE`` seconds later), as the blocking client does: a server may
        leave the view while alive (etcd expired its lease during a pause; it registers
        again), and its calls in flight must not fail."""
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()
        if self._closed or not removed:
            return
        current = {s.url for s in self.discovery.servers()}
        for info in removed:
            if info.url not in current:
                transport = self._transports.pop(info.url, None)
                if transport is not None:
                    transport.retire()  # calls that picked it before it left go elsewhere
                    self._retired.append(transport)
                    task = asyncio.ensure_future(self._close_when_idle(transport))
                    self._closing_tasks.add(task)
                    task.add_done_callback(self._closing_tasks.discard)
                self.ejector.forget(info.url)

    async def _close_when_idle(self, transport: AsyncTransport) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETIRE_GRACE
        while transport.in_flight and loop.time() < give_up and not self._closed:
            await asyncio.sleep(_RETIRED_POLL)
        if transport in self._retired:  # aclose() of the client closes it otherwise
            self._retired.remove(transport)
            await transport.aclose()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> "AsyncClusterClient":
        """Read the domain (``EtcdError`` if etcd cannot be reached) and follow it."""
        if self._started:
            if self._closed:
                raise self._closed_error()
            return self
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._started:
                return self
            if self._closed:
                raise self._closed_error()
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Event()
            self.discovery.add_listener(self._on_change_threadsafe)
            try:
                await in_thread(self._start_discovery,
                                "hprose-cluster-aio-start-%s" % self.domain)
            except BaseException:
                self._remove_listener()
                raise
            self._started = True
        return self

    def _start_discovery(self) -> None:
        with self._lifecycle:
            if not self._closed:
                self.discovery.start()  # a no-op for a shared Discovery already started

    def _close_discovery(self) -> None:
        with self._lifecycle:  # waits for a start that is still reading etcd
            if self._owns_discovery:
                self.discovery.close()

    def _remove_listener(self) -> None:
        try:
            self.discovery.remove_listener(self._on_change_threadsafe)
        except ValueError:
            pass

    async def aclose(self) -> None:
        """Stop following the domain and close every connection; calls still in flight
        fail.  Returns once the sockets and the discovery thread are closed."""
        if self._closed:
            return
        self._closed = True
        self._remove_listener()
        if self._changed is not None:
            self._changed.set()  # waiting calls see the client closed
        transports = list(self._transports.values()) + self._retired
        self._transports.clear()
        self._retired = []
        for transport in transports:
            await transport.aclose()
        if self._closing_tasks:
            await asyncio.gather(*self._closing_tasks, return_exceptions=True)
        await in_thread(self._close_discovery, "hprose-cluster-aio-close-%s" % self.domain)

    def _closed_error(self) -> HproseClusterError:
        return HproseClusterError("AsyncClusterClient for domain %r is closed" % self.domain)

    async def __aenter__(self) -> "AsyncClusterClient":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "<AsyncClusterClient %r: %d servers>" % (self.domain,
                                                         len(self.discovery.servers()))

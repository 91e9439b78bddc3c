"""``EtcdConnection``: one etcd3 client with our workarounds for its defects (ETCD.md).

1. the client is always built as ``MultiEndpointEtcd3Client`` with ``failover=True`` and a short
   ``time_retry``, so one failed call never disables an endpoint for minutes;
2. with user/password on a plaintext channel, ``call_credentials`` is cleared after construction
   (the token still travels as metadata);
3. the auth token is never refreshed by the library: on ``UNAUTHENTICATED`` we rebuild the client
   (a fresh token) and retry once; the rebuild ends the old client's watch streams, which
   reaches every watch callback as an error, so watchers re-watch (``generation`` also tells);
4. lease-not-found comes back as ``TTL == 0``: ``keepalive`` returns the TTL and leaves the
   judgement to the registrar;
5. a watch stream that ends, with or without an error, always reaches the callback as an
   EtcdError (see ``watch.py``);
6. a watch is always created with a timeout and never from inside a watch callback;
7. every request, watch and keepalive stream carries the gRPC metadata ``hasleader: true``
   (Go's ``WithRequireLeader``): a member cut off from its cluster refuses them, or ends the
   streams, with "no leader" instead of leaving a watch silently frozen.  A request refused so
   did not run, so it goes to the next member at once; a member that answers UNKNOWN "context
   deadline exceeded" is marked failed too (etcd3 only does that for UNAVAILABLE and
   DEADLINE_EXCEEDED).  Writes need a leader anyway: on such a member they would only wait
   for the timeout.

Every operation answers plain values (``values.py``) and raises the typed errors of
``errors.py``.  ``shared_connection()`` gives the process one connection per configuration.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Iterator, Sequence, TypeVar

import etcd3
import grpc

from ..errors import ConfigError, EtcdError
from .batch import StartBatcher
from .config import EtcdConfig, parse_endpoint
from .errors import (NoAnswer, bare, is_auth_error, is_no_leader, is_unknown_deadline,
                     translate)
from .keepalive import KeepaliveStream
from .pages import read_pages
from .values import Range, range_of
from .watch import WatchCallback, WatchHandle, add_watch, fail_endpoint

log = logging.getLogger("hprose_cluster.etcd")

# gRPC's own reconnect backoff grows to 120 s while etcd is unreachable, so after a long
# outage a channel could wait minutes before it even tries the returned server.  Capped at 1 s,
# registrations and watches are back about a second after etcd answers again.
# "min_reconnect_backoff" is gRPC's minimum *connect timeout*, not a backoff: at 100 ms a
# connection attempt to an etcd slowed by a busy machine gave up ("connection attempt timed
# out before receiving SETTINGS frame") and the request failed at once; it gets 5 s now (a
# refused connection still fails at once, and is retried after the short backoff).
# gRPC also shares subchannels between channels of one process by default: a new connection
# (a server starting right after etcd came back) would inherit a subchannel still waiting out
# its backoff and fail at once with UNAVAILABLE.  Each of our channels owns its subchannels.
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 5000),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.use_local_subchannel_pool", 1),
                    # a domain's first read may be one large reply (100,000 records ~ 21 MB)
                    ("grpc.max_receive_message_length", 2**31 - 1)]

REQUIRE_LEADER = ("hasleader", "true")

T = TypeVar("T")


class EtcdConnection:
    """One etcd client, with our workarounds; see the module docstring.

    Made directly, it is the caller's own (closed by ``close()``); ``shared_connection()``
    hands out one per equal configuration, closed when its last user closes it.
    """

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._stream: KeepaliveStream | None = None
        self._watch_lock = threading.Lock()
        self._closed = False
        self._users = 0  # shared connections: how many have it (see shared_connection)
        self._shared_key: tuple[int, EtcdConfig] | None = None
        self.generation = 0  # bumped each time the client is rebuilt
        self._starts = StartBatcher(self)

    # --- client construction --------------------------------------------------------------

    def _build(self) -> Any:
        config = self.config
        creds = None
        if config.tls:
            try:
                ca = open(config.ca_file, "rb").read() if config.ca_file else None
                cert = open(config.cert_file, "rb").read() if config.cert_file else None
                key = open(config.key_file, "rb").read() if config.key_file else None
            except OSError as error:
                raise ConfigError("cannot read an etcd TLS file: %s" % error) from error
            creds = grpc.ssl_channel_credentials(ca, key, cert)
        endpoints = []
        for text in config.endpoints:
            host, port, _ = parse_endpoint(text)
            grpc_host = "[%s]" % host if ":" in host else host
            endpoints.append(etcd3.Endpoint(grpc_host, port, secure=config.tls, creds=creds,
                                            time_retry=1.0, opts=_CHANNEL_OPTIONS))
        try:
            client = etcd3.MultiEndpointEtcd3Client(
                endpoints, timeout=config.timeout, user=config.user,
                password=config.password, failover=True)
        except Exception as error:
            for endpoint in endpoints:
                endpoint.close()
            what = "cannot connect to etcd"
            if config.user is not None:
                what += " as user %r" % config.user
            raise translate(what, error, config) from bare(error)
        if config.user is not None and not config.tls:
            # Defect 2: call credentials on an insecure channel fail every call; the token
            # still goes as metadata.
            client.call_credentials = None
        # Defect 7: every request and stream requires a leader (the watcher and the keepalive
        # stream take the client's metadata too).
        client.metadata = tuple(client.metadata or ()) + (REQUIRE_LEADER,)
        client._stubs.clear()
        return client

    def _current(self) -> Any:
        with self._lock:
            if self._closed:
                raise EtcdError("etcd connection to %s is closed" % self.config.describe())
            if self._client is None:
                self._client = self._build()
            return self._client

    def _rebuild(self, stale: Any) -> None:
        """Replace ``stale`` by a fresh client (new token); watchers re-watch on the new one."""
        with self._lock:
            if self._client is not stale or self._closed:
                return
            self._client = None
            self.generation += 1
        log.info("rebuilding the etcd client for %s (auth token renewal)", self.config.describe())
        try:
            stale.close()
        except Exception:  # pragma: no cover
            pass

    @property
    def current_endpoint(self) -> str | None:
        """``host:port`` of the member requests go to now (None before the first request)."""
        with self._lock:
            client = self._client
        if client is None:
            return None
        label = client._current_endpoint_label
        return str(label) if label is not None else None

    def call(self, what: str, func: Callable[[Any], T]) -> T:
        """Run ``func(client)`` on the etcd3 client and translate its failures.

        The one funnel of every request (tests and benchmarks may use it for what the typed
        methods do not offer; library code outside this package never sees the client).  An
        expired auth token is renewed once; a request refused for want of a leader moves to
        the next member at once, once per other member.
        """
        renewed = False
        moved = 0
        while True:
            client = self._current()
            label = client._current_endpoint_label
            try:
                return func(client)
            except EtcdError:
                raise
            except Exception as error:
                if not renewed and self.config.user is not None and is_auth_error(error):
                    renewed = True
                    self._rebuild(client)
                    continue
                no_leader = is_no_leader(error)
                if no_leader or is_unknown_deadline(error):
                    fail_endpoint(client, label)
                    if no_leader and moved < len(self.config.endpoints) - 1:
                        moved += 1
                        log.info("%s: etcd %s has no leader; trying another member",
                                 what, label)
                        continue
                raise translate(what, error, self.config) from bare(error)

    def on_any_endpoint(self, step: Callable[[], T]) -> T:
        """Run ``step`` (which calls etcd), trying once per endpoint: a call to a dead member
        marks it failed and the next call goes to another one, so a dead member in the list
        does not fail a server's or a client's start.  The last failure is raised.

        A start is a real attempt: endpoints that etcd3 marked failed in the last second
        (this connection is shared, and was failing while etcd restarted) are tried anyway,
        as a connection made afresh would."""
        self._forgive_if_all_failed()
        for attempt in range(len(self.config.endpoints)):
            try:
                return step()
            except EtcdError:
                if attempt == len(self.config.endpoints) - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _forgive_if_all_failed(self) -> None:
        with self._lock:
            client = self._client
        if client is None:
            return
        endpoints = list(client.endpoints.values())
        if all(endpoint.is_failed() for endpoint in endpoints):
            for endpoint in endpoints:
                endpoint.last_failed = 0

    # --- the operations we use ------------------------------------------------------------

    def get_prefix(self, prefix: str, *, count_only: bool = False) -> Range:
        """Every key under ``prefix`` (only their count with ``count_only``)."""
        return self.call("reading %s" % prefix,
                         lambda c: range_of(c.get_prefix_response(prefix, count_only=count_only)))

    def get_prefix_pages(self, prefix: str, page_size: int = 5000) -> Iterator[Range]:
        """Every key under ``prefix`` in key order, at most ``page_size`` keys per Range, all
        read at the revision of the first: one consistent read that never holds a large
        domain's reply at once (use the first page's revision and cluster_id; see
        ``pages.py``)."""
        return read_pages(self, prefix, page_size)

    def get(self, key: str) -> Range:
        """The one key ``key`` (``kvs`` is empty when it does not exist)."""
        return self.call("reading %s" % key, lambda c: range_of(c.get_response(key)))

    def put(self, key: str, value: bytes, lease_id: int | None = None) -> int:
        """Write one key; the store's revision after the write."""
        return self.call("writing %s" % key,
                         lambda c: int(c.put(key, value, lease=lease_id).header.revision))

    def put_many(self, items: Sequence[tuple[str, bytes]], lease_id: int | None = None) -> None:
        """Write several keys in one transaction, so they share one revision."""
        def txn(client: Any) -> None:
            puts = [client.transactions.put(key, value, lease=lease_id) for key, value in items]
            client.transaction(compare=[], success=puts, failure=[])
        self.call("writing %d keys" % len(items), txn)

    def register(self, key: str, value: bytes, ttl: int,
                 max_age: float = 0.0) -> tuple[int, int, float]:
        """A new lease of ``ttl`` s with ``value`` at ``key`` on it: ``(lease_id, revision,
        granted_at)``.  Concurrent calls are combined, each with its own lease and error."""
        return self._starts.register(key, value, ttl, max_age)  # see batch.py

    def delete(self, key: str) -> bool:
        """Delete one key; True if it existed."""
        return bool(self.call("deleting %s" % key, lambda c: c.delete(key)))

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its ID."""
        return int(self.call("granting a lease", lambda c: c.lease(ttl)).id)

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; the TTL etcd answered (0 or less: the lease is gone).

        Every lease of this connection is refreshed over one long-lived stream (see
        ``keepalive.py``); a failed stream moves to another endpoint, as a failed call does.
        """
        def refresh(client: Any) -> int:
            stream = self._keepalive_stream(client)
            try:
                return stream.refresh(lease_id, self.config.timeout)
            except grpc.RpcError as error:
                fail_endpoint(client, stream.label, error)
                raise
            except NoAnswer:
                fail_endpoint(client, stream.label)
                raise
        return int(self.call("refreshing lease %x" % lease_id, refresh))

    def _keepalive_stream(self, client: Any) -> KeepaliveStream:
        with self._lock:
            stream = self._stream
            if stream is None or stream.client is not client or stream.error is not None:
                if stream is not None:
                    stream.close()
                stream = self._stream = KeepaliveStream(client)
            return stream

    def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on a lease (-1 when it does not exist)."""
        return int(self.call("reading lease %x" % lease_id,
                             lambda c: c.get_lease_info(lease_id).TTL))

    def revoke(self, lease_id: int) -> None:
        self.call("revoking lease %x" % lease_id, lambda c: c.revoke_lease(lease_id))

    def compact(self, revision: int) -> None:
        self.call("compacting", lambda c: c.compact(revision, physical=True))

    def watch_prefix(self, prefix: str, start_revision: int,
                     callback: WatchCallback) -> WatchHandle:
        """Watch ``prefix`` from ``start_revision``: ``callback`` gets each ``WatchBatch``,
        and an ``EtcdError`` once if the watch ends (then it is gone: watch again).

        ``callback`` runs on the etcd watcher thread shared by every watch of this connection:
        cheap work only, and never call this from inside it (defect 6: it would deadlock).
        """
        return self._watch("watching %s" % prefix, prefix, True, start_revision, callback)

    def watch_key(self, key: str, start_revision: int, callback: WatchCallback) -> WatchHandle:
        """Watch one exact key (a registrar watches its own record). Same rules as above."""
        return self._watch("watching %s" % key, key, False, start_revision, callback)

    def _watch(self, what: str, key: str, prefix: bool, start_revision: int,
               callback: WatchCallback) -> WatchHandle:
        # Creations are serialized on our own lock: etcd3 lets one creation wait at a time and
        # wakes *every* waiting thread each time one finishes, so a thousand registrars of one
        # connection re-watching at once (after an etcd restart) spent seconds in wake-ups and
        # missed their lease refreshes.
        def add(client: Any) -> WatchHandle:
            with self._watch_lock:
                return add_watch(client, what, key, prefix, start_revision, callback,
                                 self.config)
        return self.call(what, add)

    def reset_watcher(self) -> None:
        """Drop the client's watcher if its stream has ended, so the next watch opens a new
        one on the member in use now.  A live stream is kept: other watches ride on it."""
        with self._lock:
            client = self._client
        if client is None:
            return
        watcher = client._stubs.get("watcher")
        if watcher is not None and getattr(watcher, "_stopping", True):
            client._stubs.pop("watcher", None)
            try:
                watcher.close()
            except Exception:  # pragma: no cover
                pass

    def close(self) -> None:
        """Close the client and its streams (a shared connection: once its last user has)."""
        if self._shared_key is not None:
            with _shared_lock:
                self._users -= 1
                if self._users > 0:
                    return
                if _shared.get(self._shared_key) is self:
                    del _shared[self._shared_key]
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        if client is not None:
            try:
                client.close()
            except Exception:  # pragma: no cover
                pass

    def __enter__(self) -> "EtcdConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_shared: dict[tuple[int, EtcdConfig], EtcdConnection] = {}
_shared_lock = threading.Lock()


def shared_connection(config: EtcdConfig) -> EtcdConnection:
    """The connection of this process for ``config``, made on first use: every server,
    registrar and client that does not bring its own shares it, with its scheduler, keepalive
    stream and watcher thread (250 registrations in one process once cost 1,500 threads).

    Each call counts one user, who closes it once; the last ``close()`` closes it for real.
    Keyed by process too: a forked child (a gunicorn worker) never reuses its parent's
    gRPC channels.
    """
    key = (os.getpid(), config)
    with _shared_lock:
        connection = _shared.get(key)
        if connection is None or connection._closed:
            connection = _shared[key] = EtcdConnection(config)
            connection._shared_key = key
        connection._users += 1
        return connection

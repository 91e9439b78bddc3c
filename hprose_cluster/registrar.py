"""Server side: keep one record registered in etcd for as long as the server lives.

A Registrar grants a lease, puts the record on it, refreshes the lease every heartbeat, and
watches its own key.  The registrars of one ``EtcdConnection`` run on the few threads of one
``StepScheduler``, not on a thread each; a registrar given no connection uses the process's
shared one for its configuration, so every server of a process shares them.

A registrar never gives up: a lost lease (TTL 0 in a refresh reply, or no successful refresh
for a whole TTL), a deleted key, an etcd restarted on the same or an empty data dir, or etcd
unreachable for minutes all end with the record back in etcd, retried with jittered
exponential backoff capped at ``max_backoff`` seconds.  A refresh refused by a member without
a leader goes to another member at once (``EtcdConnection.call``).
``close()`` revokes the lease, so the record disappears at once.

It knows nothing about hprose: ``Registrar(ServerInfo(domain, url), etcd=...)`` registers any
URL, a Go server's included.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from . import metrics
from .backoff import Backoff
from .errors import ConfigError, EtcdError, RegistrationError
from .etcd import EtcdConfig, EtcdConnection, WatchBatch, WatchHandle, shared_connection
from .record import ServerInfo
from .scheduler import StepScheduler, Task, scheduler_for

log = logging.getLogger("hprose_cluster.registrar")

DEFAULT_TTL = 10
DEFAULT_HEARTBEAT = 3.0


class Registrar:
    """Keeps ``info`` registered under ``<prefix>/<domain>/<uuid>`` until ``close()``."""

    def __init__(self, info: ServerInfo, *,
                 etcd: EtcdConfig | str | Sequence[str] | None = None,
                 ttl: int = DEFAULT_TTL, heartbeat: float = DEFAULT_HEARTBEAT,
                 max_backoff: float = 3.0, connection: EtcdConnection | None = None):
        if not isinstance(info, ServerInfo):
            raise ConfigError("Registrar needs a ServerInfo, got %r" % (info,))
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ConfigError("ttl must be a whole number of seconds >= 1, got %r" % (ttl,))
        if not 0 < heartbeat < ttl:
            raise ConfigError("heartbeat must be between 0 and ttl (%r), got %r" % (ttl, heartbeat))
        self.info = info
        self.ttl = ttl
        self.heartbeat = heartbeat
        self._owns_connection = connection is None
        self._connection = connection or shared_connection(EtcdConfig.coerce(etcd))
        self.config = self._connection.config
        self.key = info.key(self.config.prefix)
        self._value = info.to_json()
        self._backoff = Backoff(base=min(0.1, max_backoff), cap=max_backoff)
        self._lock = threading.Lock()
        self._closing = False
        self._scheduler: StepScheduler = scheduler_for(self._connection, "registrar")
        self._task: Task | None = None
        self._failing = False  # in an outage: further failures are logged at debug level
        self._lease_id: int | None = None
        self._last_refresh = 0.0
        self._watch: WatchHandle | None = None
        self._key_missing = False
        self._watch_broken = True
        self._watch_pending = False  # start() registered: the first step creates the watch
        self._watch_from = 0
        self._batch_tried = False  # start()'s first attempt went to the batcher
        self.registrations = 0  # how many times the record was (re)written
        self.refreshes = 0  # successful lease refreshes (keepalives)
        self._metrics = metrics.registrar_recorder(self)

    # --- public ---------------------------------------------------------------------------

    @property
    def lease_id(self) -> int | None:
        return self._lease_id

    @property
    def registered(self) -> bool:
        """True while the record is believed to be in etcd (lease refreshed within its TTL)."""
        return (self._lease_id is not None and not self._key_missing
                and time.monotonic() - self._last_refresh < self.ttl)

    def start(self) -> "Registrar":
        """Register now (raising RegistrationError if etcd refuses or cannot be reached),
        then keep the record alive in the background."""
        if self._task is not None:
            return self
        try:
            self._connection.on_any_endpoint(self._first_registration)
        except EtcdError as error:
            self._release()
            raise RegistrationError("cannot register %s for domain %r at %s: %s"
                                    % (self.info.url, self.info.domain,
                                       self.config.describe(), error)) from error
        # The first step, one heartbeat from now, watches the key from the put's revision (so
        # a deletion in between is still seen) and refreshes the lease: every failure is
        # noticed at heartbeat pace anyway, and a burst of starts is not slowed by watch
        # creations.
        self._task = self._scheduler.add(self._step, self.key, delay=self.heartbeat)
        return self

    def close(self) -> None:
        """Stop refreshing and revoke the lease, so clients see the server leave at once."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self._task is not None:
            # a step in progress ends within the connection's timeout
            self._scheduler.remove(self._task, self.config.timeout * 2 + self.heartbeat)
        self._release()

    def __enter__(self) -> "Registrar":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the loop -------------------------------------------------------------------------

    def _release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        lease_id, self._lease_id = self._lease_id, None
        if lease_id is not None:
            try:
                self._connection.revoke(lease_id)
            except EtcdError as error:
                log.warning("could not revoke the lease of %s (it expires within %d s): %s",
                            self.key, self.ttl, error)
        if self._owns_connection:
            self._connection.close()
        self._metrics.close()

    def _first_registration(self) -> None:
        """``start()``'s attempt: the first one is combined with the other starts of this
        connection running at the same moment (a new lease and one put, written together
        with theirs); a retry on another endpoint registers alone."""
        if self.registrations or self._lease_id is not None or self._batch_tried:
            self._register(watch=False)
            return
        self._batch_tried = True
        # a lease granted ahead in a burst must leave half the slack between the TTL and the
        # first refresh, one heartbeat away
        self._lease_id, revision, granted_at = self._connection.register(
            self.key, self._value, self.ttl, max_age=(self.ttl - self.heartbeat) / 2)
        self._registered(revision, watch=False)
        self._last_refresh = granted_at  # the lease's TTL runs from its grant

    def _register(self, watch: bool = True) -> None:
        """Put the record on a live lease: the current one if it still lives, else a new one.

        Then watch the key from the put's revision, so a deletion right after the put is seen
        too.  ``start()`` leaves the watch to its first scheduled step (``watch=False``) and
        returns once the record is in etcd: watch creations are serialized per connection,
        and a thousand servers of one process starting at once need not wait for them.
        """
        connection = self._connection
        if self._lease_id is not None and connection.keepalive(self._lease_id) <= 0:
            log.warning("lease %x of %s is gone; granting a new one", self._lease_id, self.key)
            self._lease_id = None
        if self._lease_id is None:
            self._lease_id = connection.grant(self.ttl)
        self._registered(connection.put(self.key, self._value, self._lease_id), watch)

    def _registered(self, revision: int, watch: bool) -> None:
        """The record was put at ``revision``: note it, and watch the key from there."""
        self._last_refresh = time.monotonic()
        self._key_missing = False
        self.registrations += 1
        self._metrics.registered()
        log.info("registered %s -> %s (lease %x)", self.key, self.info.url, self._lease_id)
        self._watch_from = revision + 1
        if watch:
            self._watch_own_key(self._watch_from)
        else:
            self._watch_pending = True

    def _watch_own_key(self, start_revision: int) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._watch_broken = False
        self._watch_pending = False
        self._watch = self._connection.watch_key(self.key, start_revision, self._on_key_event)

    def _on_key_event(self, item: WatchBatch | EtcdError) -> None:
        """Runs on the etcd watcher thread: only flag and wake, never call etcd here."""
        if self._closing:
            return
        if isinstance(item, EtcdError):
            self._watch_broken = True
            self._wake()
            return
        for event in item.events:
            if event.deleted:
                log.warning("the record %s was deleted; putting it back", self.key)
                self._key_missing = True
                self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._scheduler.wake(task)

    def _step(self) -> float | None:
        """One run on the scheduler: a tick, or the handling of its failure.  Returns the
        seconds until the next run (None once closing)."""
        if self._closing:
            return None
        try:
            delay = self._tick()
        except EtcdError as error:
            if self._closing:
                return None
            self._metrics.refresh_failed()
            if self._lease_id is not None and time.monotonic() - self._last_refresh >= self.ttl:
                log.warning("no lease refresh for %s in %d s: treating the lease as lost",
                            self.key, self.ttl)
                self._lease_id = None
            delay = min(self._backoff.next(), self.heartbeat)
            # one warning per outage: a thousand registrars retrying for minutes must not
            # flood the log
            (log.debug if self._failing else log.warning)(
                "registration of %s: %s (retrying in %.2g s)", self.key, error, delay)
            self._failing = True
            return delay
        self._backoff.reset()
        if self._failing:
            self._failing = False
            log.info("registration of %s is healthy again", self.key)
        return delay

    def _tick(self) -> float:
        """One step: re-register if needed, else refresh the lease. Returns the next wait."""
        if self._lease_id is None or self._key_missing:
            self._register()
            return self.heartbeat
        if self._watch_pending:  # just registered by start(): no refresh due yet
            self._watch_own_key(self._watch_from)
            return max(0.0, self.heartbeat - (time.monotonic() - self._last_refresh))
        ttl = self._connection.keepalive(self._lease_id)
        if ttl <= 0:
            self._metrics.refresh_failed()
            log.warning("lease %x of %s expired; registering again", self._lease_id, self.key)
            self._lease_id = None
            self._register()
            return self.heartbeat
        self._last_refresh = time.monotonic()
        self.refreshes += 1
        if self._watch_broken:
            self._check_own_key()
        return self.heartbeat

    def _check_own_key(self) -> None:
        """After a watch break: make sure the record is still ours, then watch it again."""
        response = self._connection.get(self.key)
        if not response.kvs or response.kvs[0].value != self._value:
            self._register()
        else:
            self._watch_own_key(response.revision + 1)

"""Client side: an always-current, in-memory view of one domain's servers.

``Discovery`` reads ``<prefix>/<domain>/`` and the header revision, then watches the prefix
from ``revision + 1`` so no change falls in between.  The etcd client's watch dies on any error
and can go silently stale (ETCD.md item 5), so a named daemon thread owns the view and:

- re-watches from the last applied ``mod_revision + 1`` after a watch error;
- after compaction, a new cluster id, or a revision that went backwards, re-reads the whole
  prefix and diffs it against the view, so listeners see exactly the real adds and removes;
- every ``check_interval`` seconds makes one cheap read inside the prefix (a count) that catches
  a watch waiting forever on a replaced cluster, or a count that disagrees with the view;
- keeps the last known list while etcd is unreachable: an outage never empties the view.

Reads (``servers()``, ``view``) take no lock: the view is an immutable snapshot swapped whole.
It knows nothing about hprose.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .backoff import Backoff
from .errors import EtcdError
from .etcd import (EtcdConfig, EtcdConnection, WatchHandle, events_of, header_of, is_compacted,
                   is_put_event)
from .record import RecordError, ServerInfo, validate_domain

log = logging.getLogger("hprose_cluster.discovery")

Listener = Callable[[list[ServerInfo], list[ServerInfo]], None]


class ServerView:
    """An immutable snapshot of a domain: servers in key order, indexed by etcd key and UUID
    (within one domain the UUID is the last segment of the key, so both are unique).

    The ordered tuple and the UUID index are built on first use: a burst of registrations
    makes a view per watch response, and only the ones a caller looks at need them.
    """

    __slots__ = ("by_key", "revision", "_servers", "_by_uuid")

    def __init__(self, by_key: Mapping[str, ServerInfo], revision: int = 0):
        self.by_key = dict(by_key)
        self.revision = revision
        self._servers: tuple[ServerInfo, ...] | None = None
        self._by_uuid: dict[str, ServerInfo] | None = None

    @property
    def servers(self) -> tuple[ServerInfo, ...]:
        servers = self._servers
        if servers is None:  # two threads may both build it: the same value either way
            servers = self._servers = tuple(self.by_key[k] for k in sorted(self.by_key))
        return servers

    @property
    def by_uuid(self) -> dict[str, ServerInfo]:
        by_uuid = self._by_uuid
        if by_uuid is None:
            by_uuid = self._by_uuid = {server.uuid: server for server in self.by_key.values()}
        return by_uuid

    def __len__(self) -> int:
        return len(self.by_key)

    def __iter__(self) -> Iterator[ServerInfo]:
        return iter(self.servers)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self.by_uuid


_EMPTY = ServerView({})


class Discovery:
    """Follows one domain (or, with ``domain=None``, every domain under the prefix, as the
    ``hprose-cluster watch`` command does); ``start()`` reads it, then a background thread
    keeps it current."""

    def __init__(self, domain: str | None, *,
                 etcd: EtcdConfig | str | Sequence[str] | None = None,
                 connection: EtcdConnection | None = None, check_interval: float = 5.0,
                 max_backoff: float = 3.0):
        self.domain = validate_domain(domain) if domain is not None else None
        self._owns_connection = connection is None
        self._connection = connection or EtcdConnection(EtcdConfig.coerce(etcd))
        self.config = self._connection.config
        self.prefix = ("%s/%s/" % (self.config.prefix, self.domain) if self.domain is not None
                       else "%s/" % self.config.prefix)
        self._what = ("domain %r" % self.domain if self.domain is not None
                      else "every domain under %r" % self.prefix)
        self.check_interval = check_interval
        self._backoff = Backoff(base=min(0.05, max_backoff), cap=max_backoff)
        self._view = _EMPTY
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()
        self._events: queue.Queue[Any] = queue.Queue()
        self._watch: WatchHandle | None = None
        self._watch_generation = -1
        self._next_revision = 0      # where a new watch starts: last applied mod_revision + 1
        self._applied_revision = 0   # events at or below this are already in the view
        self._cluster_id: int | None = None
        self._warned: set[tuple[str, int]] = set()
        self._skipped: set[str] = set()  # keys in the prefix whose value is not a valid record
        self._needs_resync = False
        self._thread: threading.Thread | None = None
        self._closing = False
        self.resyncs = 0  # full re-reads done after the first one (for tests and metrics)

    # --- public ---------------------------------------------------------------------------

    def start(self) -> "Discovery":
        """Read the domain once (EtcdError if etcd cannot be reached), then watch it."""
        if self._thread is not None:
            return self
        def first_read() -> None:
            self._resync(initial=True)
            self._start_watch()

        try:
            self._connection.on_any_endpoint(first_read)
        except EtcdError as error:
            self._shutdown_connection()
            raise EtcdError("cannot follow %s: %s" % (self._what, error)) from error
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hprose-cluster-discovery-%s" % (self.domain or "*"))
        self._thread.start()
        return self

    @property
    def view(self) -> ServerView:
        return self._view

    def servers(self) -> tuple[ServerInfo, ...]:
        """The current servers of the domain (a snapshot; no etcd round trip)."""
        return self._view.servers

    def add_listener(self, listener: Listener) -> None:
        """``listener(added, removed)`` runs on the discovery thread after each change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def wait_for_servers(self, timeout: float | None = None, count: int = 1) -> bool:
        """Wait until the domain has at least ``count`` servers; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._view) >= count, timeout)

    def wait_for(self, predicate: Callable[[ServerView], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate(view)`` holds; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._view), timeout)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._events.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.config.timeout * 2)
        self._shutdown_connection()

    def __enter__(self) -> "Discovery":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the view -------------------------------------------------------------------------

    def _parse(self, key: str, value: bytes, revision: int) -> ServerInfo | None:
        try:
            return ServerInfo.from_json(value, key)
        except RecordError as error:
            if (key, revision) not in self._warned:
                self._warned.add((key, revision))
                log.warning("skipping a record of %s: %s", self._what, error)
            return None

    def _publish(self, by_key: dict[str, ServerInfo], changed: Iterable[str] | None = None) -> None:
        """Swap in a new view and tell listeners exactly what changed (``changed``: the only
        keys that may differ from the current view; None compares them all)."""
        old = self._view.by_key
        if changed is None:
            changed = set(old) | set(by_key)
        added, removed = [], []
        for key in sorted(changed):  # in key order, as the view lists them
            before, after = old.get(key), by_key.get(key)
            if before != after:
                if after is not None:
                    added.append(after)
                if before is not None:
                    removed.append(before)
        if not added and not removed:
            return
        with self._changed:
            self._view = ServerView(by_key, self._applied_revision)
            self._changed.notify_all()
        for listener in list(self._listeners):
            try:
                listener(added, removed)
            except Exception:
                log.exception("a listener of %s failed", self._what)

    def _resync(self, initial: bool = False) -> None:
        """Read the whole prefix and make the view equal to it."""
        response = self._connection.get_prefix(self.prefix)
        revision, cluster_id = header_of(response)
        replaced = (self._cluster_id is not None and cluster_id != self._cluster_id) \
            or revision < self._applied_revision
        by_key: dict[str, ServerInfo] = {}
        skipped: set[str] = set()
        for kv in response.kvs:
            key = kv.key.decode("utf-8", "replace")
            info = self._parse(key, kv.value, kv.mod_revision)
            if info is None:
                skipped.add(key)
            else:
                by_key[key] = info
        self._skipped = skipped
        self._cluster_id = cluster_id
        self._applied_revision = revision
        if replaced or initial or self._next_revision <= 0:
            self._next_revision = revision + 1
        if not initial:
            self.resyncs += 1
            log.info("resynced %s at revision %d (%d servers%s)", self._what, revision,
                     len(by_key), ", etcd was replaced" if replaced else "")
        self._publish(by_key)
        if replaced:
            self._restart_watch()

    def _apply_queued(self, first: Any) -> None:
        """Apply ``first`` and every watch response already queued behind it, then publish
        once: a burst of a thousand registrations builds one new view, not a thousand."""
        by_key: dict[str, ServerInfo] | None = None
        changed: set[str] = set()
        item = first
        while item is not None:
            if isinstance(item, Exception):
                if by_key is not None:
                    self._publish(by_key, changed)
                    by_key, changed = None, set()
                self._on_watch_error(item)
            else:
                by_key = self._apply(item, by_key, changed)
            if self._watch is None:
                break  # what follows belongs to a dropped watch
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                item = None
        if by_key is not None:
            self._publish(by_key, changed)

    def _apply(self, response: Any, by_key: dict[str, ServerInfo] | None,
               changed: set[str]) -> dict[str, ServerInfo] | None:
        """Apply one watch response to ``by_key`` (a working copy of the view, made on the
        first change) and note the keys it touches in ``changed``; returns ``by_key``."""
        _, cluster_id = header_of(response)
        if self._cluster_id is not None and cluster_id and cluster_id != self._cluster_id:
            self._restart_watch(resync=True)
            return by_key
        # Every event of one transaction has the same mod_revision, and etcd sends them in one
        # response: compare with the revision applied *before* this response, or all but the
        # first event of a multi-put transaction would be dropped until the next resync.
        applied = self._applied_revision
        for event in events_of(response):
            revision = event.mod_revision
            self._next_revision = max(self._next_revision, revision + 1)
            if revision <= applied:
                continue
            self._applied_revision = max(self._applied_revision, revision)
            if by_key is None:
                by_key = dict(self._view.by_key)
            key = event.key.decode("utf-8", "replace")
            changed.add(key)
            put = is_put_event(event)
            info = self._parse(key, event.value, revision) if put else None
            if info is None:
                by_key.pop(key, None)
            else:
                by_key[key] = info
            if put and info is None:
                self._skipped.add(key)
            else:
                self._skipped.discard(key)
        return by_key

    # --- the watch ------------------------------------------------------------------------

    def _on_watch(self, response: Any) -> None:
        """Runs on the etcd watcher thread: hand over, never call etcd here."""
        self._events.put(response)

    def _start_watch(self) -> None:
        self._watch_generation = self._connection.generation
        self._watch = self._connection.watch_prefix(self.prefix, self._next_revision,
                                                    self._on_watch)

    def _restart_watch(self, resync: bool = False) -> None:
        """Drop the current watch; the thread makes a new one (after a re-read if asked)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._needs_resync = resync or self._needs_resync

    def _repair(self) -> None:
        """Bring back a watch (and the view, if needed); raises EtcdError while etcd is away."""
        self._connection.reset_watcher()
        if self._needs_resync:
            self._resync()
            self._needs_resync = False
            if self._watch is not None:
                return
        try:
            self._start_watch()
        except EtcdError as error:
            if "compact" in str(error).lower():
                self._needs_resync = True
            raise

    def _check(self) -> None:
        """The periodic cheap read: catches a replaced cluster or a silently missed event."""
        response = self._connection.get_prefix(self.prefix, count_only=True)
        revision, cluster_id = header_of(response)
        if cluster_id != self._cluster_id or revision < self._applied_revision:
            log.warning("etcd behind %s was replaced (cluster id or revision changed); "
                        "re-reading %s", self.config.describe(), self._what)
            self._restart_watch(resync=True)
        elif response.count != len(self._view) + len(self._skipped) and self._events.empty():
            self._resync()
        if self._watch is not None and self._connection.generation != self._watch_generation:
            self._restart_watch()  # the client was rebuilt (new auth token): watch on it

    def _run(self) -> None:
        next_check = time.monotonic() + self.check_interval
        retry_at = 0.0  # no repair before this (jittered backoff while etcd is away)
        failing = False
        while not self._closing:
            now = time.monotonic()
            wait = next_check - now
            if self._watch is None:
                wait = min(wait, retry_at - now)
            try:
                item = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            if self._closing:
                return
            try:
                if item is not None:
                    self._apply_queued(item)
                # Errors of a dropped watch keep arriving while etcd is away: they must not
                # make us retry faster than the backoff allows.
                if self._watch is None and time.monotonic() >= retry_at:
                    self._repair()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.check_interval
                    self._check()
                    if self._watch is None:
                        self._repair()
                if failing and self._watch is not None:
                    failing = False
                    self._backoff.reset()
                    log.info("%s: following etcd again (%d servers)",
                             self._what, len(self._view))
            except EtcdError as error:
                delay = self._backoff.next()
                retry_at = time.monotonic() + delay
                # one warning per outage, then quieter: an outage of minutes is not a log flood
                (log.debug if failing else log.warning)(
                    "%s: %s (keeping the last %d servers; retrying in %.2g s)",
                    self._what, error, len(self._view), delay)
                failing = True
            except Exception:
                log.exception("%s: unexpected error in the discovery thread", self._what)

    def _on_watch_error(self, error: Exception) -> None:
        if self._watch is None:
            return  # an error of a watch we already dropped
        compacted = is_compacted(error)
        log.warning("watch of %s broke (%s); %s", self._what,
                    "compacted" if compacted else (str(error) or type(error).__name__),
                    "re-reading" if compacted else "watching again from revision %d"
                    % self._next_revision)
        self._watch = None
        self._needs_resync = compacted or self._needs_resync

    def _shutdown_connection(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._owns_connection:
            self._connection.close()

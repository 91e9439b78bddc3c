"""Client side: an always-current, in-memory view of one domain's servers.

``Discovery`` reads ``<prefix>/<domain>/`` and the header revision, then watches the prefix
from ``revision + 1`` so no change falls in between.  The etcd client's watch dies on any error
and can go silently stale (ETCD.md item 5), so a named daemon thread owns the view and:

- re-watches from the last applied ``mod_revision + 1`` after a watch error;
- after compaction, a new cluster id, or a revision that went backwards, re-reads the whole
  prefix and diffs it against the view, so listeners see exactly the real adds and removes;
- every ``check_interval`` seconds makes one cheap read inside the prefix (a count) that catches
  a watch waiting forever on a replaced cluster, or a count that disagrees with the view;
- keeps the last known list while etcd is unreachable: an outage never empties the view;
- moves to another member when its member loses its leader (every watch and read requires one,
  see ``etcd/connection.py``), resuming from the last applied revision;
- with a snapshot directory, keeps a copy of the domain on disk and starts from it when etcd
  cannot be reached at start (``snapshot.py``).

Records that are not usable (invalid, or a scheme this client does not speak) are skipped, each
named once per process in the log, and listed in the view's ``skipped`` so a call that finds
no server can say what was there.

Reads (``servers()``, ``view``) take no lock: the view is an immutable snapshot swapped whole.
It knows nothing about hprose.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from . import metrics
from .backoff import Backoff
from .errors import ConfigError, EtcdError
from .etcd import (EtcdCompacted, EtcdConfig, EtcdConnection, EtcdUnavailable, WatchBatch,
                   WatchHandle, shared_connection)
from .record import ServerInfo, validate_domain
from .snapshot import keeper_for
from .view import EMPTY, ServerView, apply_events, diff, read_domain

__all__ = ["Discovery", "Listener", "ServerView"]

log = logging.getLogger("hprose_cluster.discovery")

Listener = Callable[[list[ServerInfo], list[ServerInfo]], None]

class Discovery:
    """Follows one domain (or, with ``domain=None``, every domain under the prefix, as the
    ``hprose-cluster watch`` command does); ``start()`` reads it, then a background thread
    keeps it current.

    ``snapshot_dir`` (default ``$HPROSE_CLUSTER_SNAPSHOT_DIR``; unset: no snapshot) keeps a
    copy of the domain on disk, used only when etcd cannot be reached at start.  Without a
    ``connection`` it uses the process's shared one for its etcd configuration.
    """

    def __init__(self, domain: str | None, *,
                 etcd: EtcdConfig | str | Sequence[str] | None = None,
                 connection: EtcdConnection | None = None, check_interval: float = 5.0,
                 max_backoff: float = 3.0,
                 snapshot_dir: str | os.PathLike[str] | None = None):
        self.domain = validate_domain(domain) if domain is not None else None
        self.config = connection.config if connection is not None else EtcdConfig.coerce(etcd)
        if self.domain is None and snapshot_dir is not None:
            raise ConfigError("snapshot_dir needs a domain: Discovery(None) follows every "
                              "domain and keeps no snapshot")
        self._snapshot = (keeper_for(snapshot_dir, self.config.prefix, self.domain,
                                     self.config.describe()) if self.domain else None)
        self._owns_connection = connection is None
        self._connection = connection or shared_connection(self.config)
        self.prefix = ("%s/%s/" % (self.config.prefix, self.domain) if self.domain is not None
                       else "%s/" % self.config.prefix)
        self._what = ("domain %r" % self.domain if self.domain is not None
                      else "every domain under %r" % self.prefix)
        self.check_interval = check_interval
        self._backoff = Backoff(base=min(0.05, max_backoff), cap=max_backoff)
        self._view = EMPTY
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()
        self._events: queue.Queue[Any] = queue.Queue()
        self._watch: WatchHandle | None = None
        self._watch_generation = -1
        self._next_revision = 0      # where a new watch starts: last applied mod_revision + 1
        self._applied_revision = 0   # events at or below this are already in the view
        self._cluster_id: int | None = None
        self._skipped: dict[str, str] = {}  # keys whose value is not a usable record: why
        self._needs_resync = False
        self._thread: threading.Thread | None = None
        self._closing = False
        self.resyncs = 0  # full re-reads done after the first one (for tests and metrics)
        self._metrics = metrics.discovery_recorder(self)

    # --- public ---------------------------------------------------------------------------

    def start(self) -> "Discovery":
        """Read the domain once, then watch it.  If etcd cannot be reached: start from the
        snapshot if there is one, else raise EtcdError."""
        if self._thread is not None:
            return self
        def first_read() -> None:
            self._resync(initial=True)
            self._start_watch()

        try:
            self._connection.on_any_endpoint(first_read)
        except EtcdUnavailable as error:
            if not self._start_from_snapshot(error):
                self._shutdown_connection()
                note = self._snapshot.note if self._snapshot is not None else ""
                raise type(error)("cannot follow %s: %s%s" % (self._what, error, note)) \
                    from error
        except EtcdError as error:
            self._shutdown_connection()
            raise type(error)("cannot follow %s: %s" % (self._what, error)) from error
        else:
            self._flush_snapshot(force=True)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hprose-cluster-discovery-%s" % (self.domain or "*"))
        self._thread.start()
        return self

    @property
    def view(self) -> ServerView:
        return self._view

    @property
    def from_snapshot(self) -> bool:
        """True while the view comes from the snapshot file (etcd not reached yet)."""
        return self._view.from_snapshot

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
        self._flush_snapshot(force=True)
        self._shutdown_connection()

    def __enter__(self) -> "Discovery":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the view -------------------------------------------------------------------------

    def _publish(self, by_key: dict[str, ServerInfo], changed: Iterable[str] | None = None,
                 force: bool = False) -> None:
        """Swap in a new view and tell listeners exactly what changed (``changed``: the only
        keys that may differ from the current view; None compares them all).  ``force``
        swaps it in even if no server changed (to replace a view from the snapshot)."""
        added, removed = diff(self._view.by_key, by_key, changed)
        if not added and not removed and not force and self._skipped == self._view.skipped:
            return
        everything = not self._view.by_key and len(added) == len(by_key)
        with self._changed:
            self._view = ServerView(by_key, self._applied_revision, skipped=self._skipped,
                                    servers=tuple(added) if everything else None)
            self._changed.notify_all()
        if self._snapshot is not None and (added or removed or force):
            self._snapshot.changed()
        self._tell(added, removed)

    def _tell(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        for listener in list(self._listeners):
            try:
                listener(added, removed)
            except Exception:
                log.exception("a listener of %s failed", self._what)

    def _resync(self, initial: bool = False) -> None:
        """Read the whole prefix and make the view equal to it."""
        revision, cluster_id, by_key, skipped = read_domain(self._connection, self.prefix)
        self._metrics.heard(resync=not initial)
        replaced = (self._cluster_id is not None and cluster_id != self._cluster_id) \
            or revision < self._applied_revision
        self._skipped = skipped
        self._cluster_id = cluster_id
        self._applied_revision = revision
        if replaced or initial or self._next_revision <= 0:
            self._next_revision = revision + 1
        if not initial:
            self.resyncs += 1
            log.info("resynced %s at revision %d (%d servers%s)", self._what, revision,
                     len(by_key), ", etcd was replaced" if replaced else "")
        was_snapshot = self._view.from_snapshot
        self._publish(by_key, force=was_snapshot)
        if was_snapshot:
            log.info("%s: etcd answered; the view from the snapshot is replaced (%d servers)",
                     self._what, len(by_key))
        if self._snapshot is not None:
            self._snapshot.changed()  # a full read: the file must agree with etcd now
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

    def _apply(self, batch: WatchBatch, by_key: dict[str, ServerInfo] | None,
               changed: set[str]) -> dict[str, ServerInfo] | None:
        """Apply one watch response to ``by_key`` (a working copy of the view, made on the
        first change) and note the keys it touches in ``changed``; returns ``by_key``."""
        self._metrics.heard()
        cluster_id = batch.cluster_id
        if self._cluster_id is not None and cluster_id and cluster_id != self._cluster_id:
            self._restart_watch(resync=True)
            return by_key
        # Every event of one transaction has the same mod_revision, and etcd sends them in one
        # response: compare with the revision applied *before* this response, or all but the
        # first event of a multi-put transaction would be dropped until the next resync.
        by_key, newest = apply_events(batch.events, self._applied_revision, self._view.by_key,
                                      by_key, changed, self._skipped)
        self._next_revision = max(self._next_revision, newest + 1)
        self._applied_revision = max(self._applied_revision, newest)
        return by_key

    # --- the watch ------------------------------------------------------------------------

    def _on_watch(self, item: WatchBatch | EtcdError) -> None:
        """Runs on the etcd watcher thread: hand over, never call etcd here."""
        self._events.put(item)

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
        except EtcdCompacted:
            self._needs_resync = True
            raise

    def _check(self) -> None:
        """The periodic cheap read: catches a replaced cluster or a silently missed event."""
        response = self._connection.get_prefix(self.prefix, count_only=True)
        self._metrics.heard()
        revision, cluster_id = response.revision, response.cluster_id
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
            if self._snapshot is not None and self._snapshot.due is not None:
                wait = min(wait, self._snapshot.due - now)
            try:
                item = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            if self._closing:
                return
            try:
                if item is not None:
                    self._apply_queued(item)
                self._flush_snapshot()
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
        self._metrics.watch_broke()
        compacted = isinstance(error, EtcdCompacted)
        log.warning("watch of %s broke (%s); %s", self._what,
                    "compacted" if compacted else (str(error) or type(error).__name__),
                    "re-reading" if compacted else "watching again from revision %d"
                    % self._next_revision)
        self._watch = None
        self._needs_resync = compacted or self._needs_resync

    # --- the snapshot ---------------------------------------------------------------------

    def _start_from_snapshot(self, error: EtcdError) -> bool:
        """etcd cannot be reached at start: take the view from the snapshot, if one is
        usable; the discovery thread replaces it as soon as etcd answers."""
        loaded = self._snapshot.load_at_start(self._what, error) if self._snapshot else None
        if loaded is None:
            return False
        with self._changed:
            self._view = ServerView({s.key(self.config.prefix): s for s in loaded.servers}, 0,
                                    from_snapshot=True)
            self._changed.notify_all()
        self._tell(list(self._view.servers), [])
        self._needs_resync = True  # the thread's first repair reads etcd
        return True

    def _flush_snapshot(self, force: bool = False) -> None:
        view = self._view
        if self._snapshot is not None and not view.from_snapshot:
            self._snapshot.flush(view.servers, view.revision, force)

    def _shutdown_connection(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._owns_connection:
            self._connection.close()
        self._metrics.close()

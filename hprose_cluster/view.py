"""``ServerView``: what a Discovery knows of its domain at one moment, immutable; how a stored
value becomes a server of the view, or a skipped record; and how a read of the domain or a
watch response becomes a new view (what changed, for the listeners).

Readers (selectors, the client on every call) take no lock: a view is swapped whole.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Iterable, Iterator, Mapping

from .etcd import EtcdConnection, Event, Range
from .record import RecordError, ServerInfo

log = logging.getLogger("hprose_cluster.discovery")

# (key, reason) of every skipped record already logged by this process: twenty clients of
# one domain warn once about its bad record, not twenty times.  Bounded, in case of churn.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()
_MAX_WARNED = 10_000


def parse_record(key: str, value: bytes, skipped: dict[str, str]) -> ServerInfo | None:
    """The record at ``key``; None if it is not usable, with the reason put in ``skipped``
    (and logged once per process)."""
    try:
        info = ServerInfo.from_json(value, key)
    except RecordError as error:
        reason = str(error)
        skipped[key] = reason
        with _warned_lock:
            if (key, reason) in _warned:
                return None
            if len(_warned) >= _MAX_WARNED:
                _warned.clear()
            _warned.add((key, reason))
        log.warning("skipping %s", reason)
        return None
    skipped.pop(key, None)
    return info


def read_records(pages: Iterable[Range], skipped: dict[str, str]) -> dict[str, ServerInfo]:
    """The usable records of ``pages`` by key (in the pages' order); the others go to
    ``skipped`` with the reason."""
    by_key: dict[str, ServerInfo] = {}
    for page in pages:
        for kv in page.kvs:
            info = parse_record(kv.key, kv.value, skipped)
            if info is not None:
                by_key[kv.key] = info
    return by_key


def read_domain(connection: EtcdConnection, prefix: str
                ) -> tuple[int, int, dict[str, ServerInfo], dict[str, str]]:
    """Everything under ``prefix``, read in pages at one revision: ``(revision, cluster_id,
    records by key, skipped keys with the reason)``."""
    pages = connection.get_prefix_pages(prefix)
    first = next(pages)
    revision, cluster_id = first.revision, first.cluster_id
    skipped: dict[str, str] = {}
    return revision, cluster_id, read_records(itertools.chain([first], pages), skipped), skipped


def apply_events(events: Iterable[Event], applied: int, base: Mapping[str, ServerInfo],
                 by_key: dict[str, ServerInfo] | None, changed: set[str],
                 skipped: dict[str, str]) -> tuple[dict[str, ServerInfo] | None, int]:
    """Apply the ``events`` newer than revision ``applied`` to ``by_key``, a working copy of
    ``base`` (made on the first change), noting the keys they touch in ``changed``; returns
    ``by_key`` and the newest revision among the events (0 without events)."""
    newest = 0
    for event in events:
        revision = event.mod_revision
        newest = max(newest, revision)
        if revision <= applied:
            continue
        if by_key is None:
            by_key = dict(base)
        key = event.key
        changed.add(key)
        if event.deleted:
            skipped.pop(key, None)
            info = None
        else:
            info = parse_record(key, event.value, skipped)
        if info is None:
            by_key.pop(key, None)
        else:
            by_key[key] = info
    return by_key, newest


def diff(old: Mapping[str, ServerInfo], new: Mapping[str, ServerInfo],
         changed: Iterable[str] | None = None) -> tuple[list[ServerInfo], list[ServerInfo]]:
    """``(added, removed)`` from ``old`` to ``new``, each in key order; ``changed``: the only
    keys that may differ (None: any).  From an empty view (a client's first read of 100,000
    servers) it is just ``new`` in key order, without a set of every key to sort."""
    if changed is None:
        if not old:
            return [new[key] for key in sorted(new)], []
        changed = old.keys() | new.keys()
    added, removed = [], []
    for key in sorted(changed):
        before, after = old.get(key), new.get(key)
        if before != after:
            if after is not None:
                added.append(after)
            if before is not None:
                removed.append(before)
    return added, removed


class ServerView:
    """An immutable snapshot of a domain: servers in key order, indexed by etcd key and UUID
    (within one domain the UUID is the last segment of the key, so both are unique).

    ``skipped`` maps the keys whose value is not a record we can use to the reason (a bad
    record, a scheme this client does not speak), so "no server" can say what was there.
    ``from_snapshot`` is True while the view comes from the snapshot file read because etcd
    could not be reached at start; the first answer from etcd replaces it.

    The ordered tuple and the UUID index are built on first use: a burst of registrations
    makes a view per watch response, and only the ones a caller looks at need them.
    """

    __slots__ = ("by_key", "revision", "skipped", "from_snapshot", "_servers", "_by_uuid")

    def __init__(self, by_key: Mapping[str, ServerInfo], revision: int = 0, *,
                 skipped: Mapping[str, str] | None = None, from_snapshot: bool = False,
                 servers: tuple[ServerInfo, ...] | None = None):
        """``servers``: the servers of ``by_key`` in key order, when the caller has them."""
        self.by_key = dict(by_key)
        self.revision = revision
        self.skipped: Mapping[str, str] = dict(skipped) if skipped else {}
        self.from_snapshot = from_snapshot
        self._servers: tuple[ServerInfo, ...] | None = servers
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


EMPTY = ServerView({})

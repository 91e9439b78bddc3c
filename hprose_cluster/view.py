"""``ServerView``: what a Discovery knows of its domain at one moment, immutable; and how a
stored value becomes a server of the view, or a skipped record.

Readers (selectors, the client on every call) take no lock: a view is swapped whole.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator, Mapping

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
                 skipped: Mapping[str, str] | None = None, from_snapshot: bool = False):
        self.by_key = dict(by_key)
        self.revision = revision
        self.skipped: Mapping[str, str] = dict(skipped) if skipped else {}
        self.from_snapshot = from_snapshot
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


EMPTY = ServerView({})

"""What etcd answers, as plain values: the etcd3 client's protobuf objects never leave this
package, so the registrar, discovery and the CLI depend on these few fields only (and a
different etcd client could stand behind them).

Keys are text (decoded as UTF-8, undecodable bytes replaced); values stay bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import etcd3.events


class KeyValue(NamedTuple):
    """One stored key.  ``lease`` is 0 for a key without a lease."""

    key: str
    value: bytes
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Range:
    """The keys of one read (none for a count-only read), how many there are, and the
    header: the store's ``revision`` at the read and the ``cluster_id`` that answered."""

    kvs: tuple[KeyValue, ...]
    count: int
    revision: int
    cluster_id: int


class Event(NamedTuple):
    """A put (``deleted`` False, with its value) or a delete (value ``b""``) of one key."""

    key: str
    value: bytes
    mod_revision: int
    deleted: bool


class WatchBatch(NamedTuple):
    """The events of one watch response, in order, with the header of that response."""

    events: tuple[Event, ...]
    revision: int
    cluster_id: int


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def key_value(kv: Any) -> KeyValue:
    return KeyValue(decode_key(kv.key), kv.value, kv.mod_revision, kv.lease)


def range_of(response: Any) -> Range:
    """A protobuf RangeResponse as a Range."""
    header = response.header
    # tuple.__new__ skips the namedtuple's own __new__ (a Python call): a page holds 5,000
    make = tuple.__new__
    kvs = tuple([make(KeyValue, (kv.key.decode("utf-8", "replace"), kv.value,
                                 kv.mod_revision, kv.lease)) for kv in response.kvs])
    return Range(kvs, response.count, header.revision, header.cluster_id)


def watch_batch(response: Any) -> WatchBatch:
    """An etcd3 WatchResponse (header + etcd3 events) as a WatchBatch."""
    events = []
    for event in response.events or ():
        kv = event._event.kv  # the protobuf behind etcd3's wrapper: no __getattr__ per field
        deleted = isinstance(event, etcd3.events.DeleteEvent)
        events.append(Event(decode_key(kv.key), b"" if deleted else kv.value, kv.mod_revision,
                            deleted))
    header = response.header
    return WatchBatch(tuple(events), header.revision, header.cluster_id)

"""Reading records for ``ls`` and ``get``: every read on any live member, keys split back
into domain and UUID, and one record with its etcd metadata as ``--json`` prints it."""

from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

from ..etcd import EtcdConnection, KeyValue

T = TypeVar("T")


def read(connection: EtcdConnection, step: Callable[[], T]) -> T:
    """``step()`` on any live member: a request to a dead endpoint marks it failed and is
    tried on the next one (etcd3 starts on a random endpoint, so without this a dead member
    in ``--etcd`` failed a share of the runs)."""
    return connection.on_any_endpoint(step)


def split_key(prefix: str, key: str) -> tuple[str, str]:
    """``<prefix>/<domain>/<uuid>`` -> (domain, uuid); a key of another shape gives what it has."""
    rest = key[len(prefix) + 1:]
    domain, _, uuid = rest.partition("/")
    return domain, uuid


def entry(connection: EtcdConnection, kv: KeyValue) -> dict[str, Any]:
    """One stored record with its etcd metadata, as ``get --json`` and ``ls DOMAIN --json``
    print it.  ``ttl`` is the seconds left on the lease (None: no lease; -1: lease gone)."""
    raw = kv.value.decode("utf-8", "replace")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    lease = kv.lease
    ttl = read(connection, lambda: connection.lease_ttl(lease)) if lease else None
    return {"key": kv.key, "lease": lease, "ttl": ttl,
            "mod_revision": kv.mod_revision, "value": value}

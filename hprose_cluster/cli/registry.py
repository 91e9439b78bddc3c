"""Reading records for ``ls`` and ``get``: keys split back into domain and UUID, and one
record with its etcd metadata as ``--json`` prints it."""

from __future__ import annotations

import json
from typing import Any

from ..etcd import EtcdConnection


def split_key(prefix: str, key: str) -> tuple[str, str]:
    """``<prefix>/<domain>/<uuid>`` -> (domain, uuid); a key of another shape gives what it has."""
    rest = key[len(prefix) + 1:]
    domain, _, uuid = rest.partition("/")
    return domain, uuid


def entry(connection: EtcdConnection, kv: Any) -> dict[str, Any]:
    """One stored record with its etcd metadata, as ``get --json`` and ``ls DOMAIN --json``
    print it.  ``ttl`` is the seconds left on the lease (None: no lease; -1: lease gone)."""
    raw = kv.value.decode("utf-8", "replace")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    lease = int(getattr(kv, "lease", 0) or 0)
    ttl = connection.lease_ttl(lease) if lease else None
    return {"key": kv.key.decode("utf-8", "replace"), "lease": lease, "ttl": ttl,
            "mod_revision": kv.mod_revision, "value": value}

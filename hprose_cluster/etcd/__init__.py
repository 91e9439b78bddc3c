"""Everything that talks to etcd, and the only package that uses the etcd3 client.

- ``config``: ``EtcdConfig``, where etcd is and how to reach it;
- ``errors``: the typed ``EtcdError`` subclasses code branches on;
- ``values``: what etcd answers, as plain values (keys, ranges, watch events);
- ``connection``: ``EtcdConnection`` and ``shared_connection()``;
- ``keepalive`` and ``watch``: the lease keepalive stream and the watches behind it;
- ``batch``: registrations started together, granted and written together;
- ``pages``: reading a large prefix in pages and sub-ranges.

The etcd3 client's protobuf objects stay inside this package.
"""

from .config import (DEFAULT_ENDPOINT, ENV_CA, ENV_CERT, ENV_ENDPOINTS, ENV_KEY, ENV_PASSWORD,
                     ENV_PREFIX, ENV_USER, EtcdConfig)
from .connection import EtcdConnection, shared_connection
from .errors import (EtcdCompacted, EtcdNoLeader, EtcdPermissionDenied, EtcdUnauthenticated,
                     EtcdUnavailable)
from .values import Event, KeyValue, Range, WatchBatch
from .watch import WatchCallback, WatchHandle

__all__ = [
    "DEFAULT_ENDPOINT", "ENV_CA", "ENV_CERT", "ENV_ENDPOINTS", "ENV_KEY", "ENV_PASSWORD",
    "ENV_PREFIX", "ENV_USER", "EtcdCompacted", "EtcdConfig", "EtcdConnection", "EtcdNoLeader",
    "EtcdPermissionDenied", "EtcdUnauthenticated", "EtcdUnavailable", "Event", "KeyValue",
    "Range", "WatchBatch", "WatchCallback", "WatchHandle", "shared_connection",
]

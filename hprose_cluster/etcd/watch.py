"""Watches whose every end reaches the caller, as plain values and typed errors.

etcd3 would otherwise leave a watch silently dead in three ways:

* with auth on, etcd answers a watch created with an expired token (or without the
  permission) by "created, then canceled", which etcd3 takes for success and never reports.
  So with a user we first make one count-only read of the same range: it renews an expired
  token (or raises a clear permission error) right before the watch is created;
* a watch stream that ends without an error (its client was closed or rebuilt) calls back
  with ``None``: the callback gets an ``EtcdUnavailable`` instead, so the watcher re-watches;
* a stream ended by a member that lost its leader (or that stopped answering) would be made
  again on the same member: that member is marked failed first, so the next watch goes to
  another one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Union

import grpc

from ..errors import EtcdError
from .errors import (EtcdUnavailable, bare, is_no_leader, is_unknown_deadline, status_code,
                     translate)
from .values import WatchBatch, watch_batch

if TYPE_CHECKING:
    from .config import EtcdConfig

log = logging.getLogger("hprose_cluster.etcd")

WatchCallback = Callable[[Union[WatchBatch, EtcdError]], None]

# Codes after which etcd3 itself moves unary calls to another endpoint.
_FAILED_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.INTERNAL)


class WatchHandle:
    """A live watch; ``cancel()`` stops it."""

    def __init__(self, client: Any, watch_id: Any):
        self._client = client
        self._watch_id = watch_id

    def cancel(self) -> None:
        try:
            self._client.cancel_watch(self._watch_id)
        except Exception as error:  # the stream may already be gone with its client
            log.debug("cancelling watch %s: %s", self._watch_id, error)


def fail_endpoint(client: Any, label: Any, error: BaseException | None = None) -> None:
    """Mark member ``label`` failed (for etcd3's one second), so the next request, stream or
    watch goes to another member.  ``error`` None: the member did not answer in time.

    What etcd3 does after a failed unary call, for our streams, and for the answers it does
    not act on (UNKNOWN "context deadline exceeded").  Only the member the failed request
    went to is marked: every watch of a stream hears of its end, and by the last one the
    client may already be on a healthy member, which must not be failed in turn."""
    if error is not None:
        code = status_code(error)
        if code not in _FAILED_CODES and not is_unknown_deadline(error):
            return
    try:
        endpoint = client.endpoints.get(label)
        if endpoint is None:
            return
        endpoint.fail()
        if client._current_endpoint_label == label:
            client._clear_old_stubs()
    except Exception:  # pragma: no cover - the client may be closing
        pass


def add_watch(client: Any, what: str, key: str, prefix: bool, start_revision: int,
              callback: WatchCallback, config: "EtcdConfig") -> WatchHandle:
    """Create one watch on ``client`` (the caller serializes creations and translates what
    this raises); ``callback`` gets WatchBatch values and, once, an EtcdError."""
    endpoint = config.describe()

    label: Any = None  # the member the watch is on, known once it is created

    def guarded(response: Any) -> None:
        item: WatchBatch | EtcdError
        if response is None:
            item = EtcdUnavailable("%s: the watch stream to etcd %s ended" % (what, endpoint))
        elif isinstance(response, BaseException):
            if label is not None and (is_no_leader(response) or is_unknown_deadline(response)
                                      or status_code(response) in _FAILED_CODES):
                fail_endpoint(client, label)
            # one line naming the endpoints, not gRPC's multi-line repr (no probe: this
            # runs on the watcher thread)
            item = translate(what, response, config, probe=False)
            if item is not response:
                item.__cause__ = bare(response)
        else:
            item = watch_batch(response)
        callback(item)

    if config.user is not None:
        if prefix:
            client.get_prefix_response(key, count_only=True)
        else:
            client.get_response(key, count_only=True)
    if prefix:
        watch_id = client.add_watch_prefix_callback(key, guarded, start_revision=start_revision)
    else:
        watch_id = client.add_watch_callback(key, guarded, start_revision=start_revision)
    label = client._current_endpoint_label
    log.debug("%s: watch %s created on %s", what, watch_id, label)
    return WatchHandle(client, watch_id)

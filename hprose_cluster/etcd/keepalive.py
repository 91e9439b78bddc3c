"""One long-lived LeaseKeepAlive stream carrying the lease refreshes of one etcd client.

etcd3's ``refresh_lease`` opens a new bidirectional stream for every refresh (about 1 ms of
client CPU, several messages): a thousand registrations in one process then cost most of a
core and fall behind a 1 s heartbeat.  Here a refresh is one message on a stream that stays
open, and etcd's replies are handed to the waiting callers by lease ID (etcd answers a refresh
of an unknown lease with TTL 0, which the registrar treats as a lost lease: ETCD.md defect 4).

A stream that fails fails every refresh waiting on it and is replaced by the next refresh; a
refresh with no answer within the timeout breaks the stream too (a paused etcd holds it open
without answering).  The stream carries the client's metadata, ``hasleader`` included, so a
member that loses its leader ends it with an error instead of leaving refreshes unanswered.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable

import etcd3.etcdrpc
import grpc

from .errors import NoAnswer, StreamError


class KeepaliveStream:
    """The refreshes of every lease of ``client``, over one stream and one reader thread."""

    def __init__(self, client: Any):
        self.client = client
        self._requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._waiters: dict[int, list[list[Any]]] = {}
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._responses = client.leasestub.LeaseKeepAlive(
            self._request_iterator(), credentials=client.call_credentials,
            metadata=client.metadata)
        self.label = client._current_endpoint_label  # the member the stream went to
        self._reader = threading.Thread(target=self._read, name="hprose-cluster-keepalive",
                                        daemon=True)
        self._reader.start()

    def _request_iterator(self) -> Iterable[Any]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        error: BaseException | None = None
        try:
            for response in self._responses:
                with self._lock:
                    waiters = self._waiters.get(response.ID)
                    waiter = waiters.pop(0) if waiters else None
                    if waiters == []:
                        del self._waiters[response.ID]
                if waiter is not None:
                    waiter[1] = response.TTL
                    waiter[0].set()
        except grpc.RpcError as failure:
            error = failure
        finally:
            self._fail(error or StreamError("the etcd keepalive stream ended"))

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
            waiters, self._waiters = self._waiters, {}
        for pending in waiters.values():
            for waiter in pending:
                waiter[2] = error
                waiter[0].set()

    def refresh(self, lease_id: int, timeout: float) -> int:
        """Refresh ``lease_id`` once: the TTL etcd answered (0 or less: no such lease).
        Raises the stream's error (a ``grpc.RpcError`` or ``StreamError``) if it failed."""
        waiter: list[Any] = [threading.Event(), None, None]  # done, ttl, error
        with self._lock:
            if self.error is not None:
                raise self.error
            self._waiters.setdefault(lease_id, []).append(waiter)
        self._requests.put(etcd3.etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
        if not waiter[0].wait(timeout):
            self.close()
            raise NoAnswer("no answer to a lease refresh within %.3g s" % timeout)
        if waiter[2] is not None:
            raise waiter[2]
        return int(waiter[1])

    def close(self) -> None:
        self._fail(StreamError("the etcd keepalive stream was closed"))
        self._requests.put(None)
        self._responses.cancel()

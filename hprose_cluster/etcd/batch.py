"""Registrations started together are written together: ``StartBatcher``.

A first registration needs a lease of its own and a put of the record on it: two blocking
gRPC calls, ~0.4 ms of this process's CPU each, nearly all of it inside grpcio, and two raft
entries for etcd.  A thousand servers of one process starting at once spent ~0.9 s of CPU
on them, and etcd about as much.  So the starts that overlap on one connection are
combined (group commit, no timer): a start that finds no batch running leads one; it takes
every start waiting, grants their leases concurrently (one asynchronous ``LeaseGrant`` each,
in flight together on the channel: 2-3x less CPU than blocking calls) and writes all their
records in one transaction (one revision); the grants of the next batch overlap this
transaction.  Starts arriving meanwhile wait, and the oldest of them leads the next batch.
A lone start is a batch of one: it waits for nothing.

In a burst (a batch of ``BURST`` starts or more) a batch also grants twice as many leases
as it needs, for the batches after it: etcd writes each grant as a raft entry of its own,
and the entries in flight together share one disk sync, so fewer and larger rounds of
grants cost fewer syncs.  A start takes such a spare only while it is young enough for the
start's heartbeat; a spare older than ``SPARE_LIFETIME`` is revoked by the next batch, and
one left over when the burst ends expires by itself (it holds no key).

Every start keeps its own lease, so each server still leaves alone when it stops or dies,
and each caller gets its own outcome:

- a lease grant that fails fails that start only;
- a transaction refused for a reason that may be one record's (too large, a key the etcd
  user may not write) is retried as one put per record, so only the starts at fault fail;
- etcd unreachable fails them all, each with the error, after one timeout (not one each);
- a start that fails has its lease revoked without waiting (else it just expires).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import grpc
from etcd3.etcdrpc import rpc_pb2

from ..errors import EtcdError
from .errors import EtcdUnavailable
from .watch import fail_endpoint

if TYPE_CHECKING:
    from .connection import EtcdConnection

log = logging.getLogger("hprose_cluster.etcd")

# etcd refuses a transaction of more than --max-txn-ops (default 128) operations, or a
# request over --max-request-bytes (default 1.5 MiB): a batch stays under both.
MAX_BATCH = 128
MAX_BATCH_BYTES = 1 << 20
BURST = 4  # a batch of this many starts grants leases ahead ...
AHEAD = 2  # ... this many times as many as it needs, for the batches after it
SPARE_LIFETIME = 1.0  # a spare older than this is revoked


class _Ticket:
    """A start's place in one stage: set ``done`` once its batch ran, or once it is to lead
    the next batch (``lead``)."""

    __slots__ = ("done", "lead")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.lead = False


class _Start:
    """One start: its record, its outcome, and its tickets for the two stages."""

    __slots__ = ("key", "value", "ttl", "max_age", "size", "lease", "granted_at", "revision",
                 "error", "tickets")

    def __init__(self, key: str, value: bytes, ttl: int, max_age: float):
        self.key = key.encode("utf-8")
        self.value = value
        self.ttl = ttl
        self.max_age = max_age
        self.granted_at = 0.0
        self.size = len(self.key) + len(value) + 32
        self.lease: int | None = None
        self.revision: int | None = None
        self.error: EtcdError | None = None
        self.tickets = (_Ticket(), _Ticket())  # granting, writing


class _Stage:
    """Group commit: ``process`` runs on one batch of queued starts at a time.  Starts
    queued while no batch runs get one at once, led by the oldest; the others wait, and the
    oldest of them leads the next (no timer, no thread of its own).  ``process`` records
    each start's outcome in the start and must not raise."""

    def __init__(self, index: int, process: Callable[[list[_Start]], None]):
        self._index = index  # which of a start's tickets is this stage's
        self._process = process
        self._lock = threading.Lock()
        self._pending: list[_Start] = []
        self._leading = False  # a batch is running, or its next leader has been told
        self.batches = 0  # how many batches ran (for tests and benchmarks)

    def queue(self, starts: list[_Start]) -> None:
        """Queue ``starts`` together (so that they can share a batch); then each one's
        thread calls ``wait``."""
        if not starts:
            return
        with self._lock:
            self._pending.extend(starts)
            if self._leading:
                return
            self._leading = True
        self._tell_to_lead(starts[0])

    def _tell_to_lead(self, start: _Start) -> None:
        ticket = start.tickets[self._index]
        ticket.lead = True
        ticket.done.set()

    def wait(self, start: _Start) -> None:
        """Return once the batch holding ``start`` ran (led by this thread if told to).

        A running batch takes at most the connection's timeout per call, and always ends by
        waking every start it took and the next leader."""
        ticket = start.tickets[self._index]
        ticket.done.wait()
        if not ticket.lead:
            return
        with self._lock:  # the leader is the oldest pending start: its batch holds it
            batch: list[_Start] = []
            size = 0
            for queued in self._pending:
                if batch and (len(batch) >= MAX_BATCH or size + queued.size > MAX_BATCH_BYTES):
                    break
                batch.append(queued)
                size += queued.size
            del self._pending[:len(batch)]
            self.batches += 1
        try:
            self._process(batch)
        except BaseException as error:  # pragma: no cover - a bug: fail its starts, not hang
            for queued in batch:
                if queued.error is None and queued.revision is None:
                    queued.error = EtcdError("registering %s: %r" % (queued.key.decode(), error))
            raise
        finally:
            for queued in batch:
                queued.tickets[self._index].done.set()
            with self._lock:
                following = self._pending[0] if self._pending else None
                self._leading = following is not None
            if following is not None:
                self._tell_to_lead(following)


class StartBatcher:
    """Grants and puts the first registrations of one connection in batches; see the module
    docstring.  ``register()`` is the whole interface.

    Two stages, each a group commit of its own, so that one batch's transaction overlaps the
    next batch's lease grants."""

    def __init__(self, connection: "EtcdConnection"):
        self._connection = connection
        self._grants = _Stage(0, self._grant)
        self._puts = _Stage(1, self._put)
        self._revokes: set[Any] = set()  # revocations in flight (a dropped future is cancelled)
        self._revokes_lock = threading.Lock()
        # leases granted ahead in a burst: (ttl, lease, granted at); only the grant stage's
        # running batch touches them
        self._spares: list[tuple[int, int, float]] = []

    @property
    def spares(self) -> set[int]:
        """Leases granted ahead and not used yet (for tests)."""
        return {lease for _, lease, _ in self._spares}

    @property
    def batches(self) -> int:
        """Transactions written so far (for tests and benchmarks)."""
        return self._puts.batches

    @property
    def waiting(self) -> int:
        """Starts queued behind a running batch, in either stage (for tests)."""
        return len(self._grants._pending) + len(self._puts._pending)

    def register(self, key: str, value: bytes, ttl: int,
                 max_age: float = 0.0) -> tuple[int, int, float]:
        """Grant a lease of ``ttl`` seconds and put ``value`` at ``key`` on it; returns
        ``(lease_id, revision, granted_at)`` once the record is in etcd (``granted_at``: the
        ``time.monotonic()`` the lease's TTL runs from), else raises EtcdError (the lease of
        a failed start is revoked).  In a burst the lease may have been granted ahead, at
        most ``max_age`` seconds before."""
        start = _Start(key, value, ttl, max_age)
        try:
            self._grants.queue([start])
            self._grants.wait(start)
            if start.error is None:
                self._puts.wait(start)  # queued by the batch that granted its lease
        finally:
            if start.error is not None and start.lease is not None:
                self._revoke_later(start.lease)
        if start.error is not None:
            raise start.error
        assert start.lease is not None and start.revision is not None
        return start.lease, start.revision, start.granted_at

    # --- the stages -----------------------------------------------------------------------

    def _take_spares(self, batch: list[_Start]) -> None:
        """Give the starts of ``batch`` leases granted ahead (same TTL, young enough); revoke
        the spares too old for anyone."""
        now = time.monotonic()
        kept: list[tuple[int, int, float]] = []
        for ttl, lease, granted_at in self._spares:
            if now - granted_at > SPARE_LIFETIME:
                self._revoke_later(lease)
                continue
            taker = next((start for start in batch if start.lease is None and start.ttl == ttl
                          and now - granted_at <= start.max_age), None)
            if taker is None:
                kept.append((ttl, lease, granted_at))
            else:
                taker.lease, taker.granted_at = lease, granted_at
        self._spares = kept

    def _grant(self, batch: list[_Start]) -> None:
        """A lease for every start of ``batch``, all requests in flight together.

        In a burst (a batch of ``BURST`` starts or more), ``AHEAD`` times as many leases are
        granted besides, for the next batches: etcd writes a lease per raft entry and the
        entries in flight together share a disk sync, so fewer, larger rounds of grants cost
        fewer syncs (a start uses a spare only if it is at most ``max_age`` seconds old; one
        left over expires, holding no key)."""
        self._take_spares(batch)
        todo = [start for start in batch if start.lease is None]
        ahead = 0
        if len(batch) >= BURST and all(start.max_age > 0 for start in todo):
            ahead = max(0, min(len(todo) * AHEAD, MAX_BATCH - len(todo),
                               MAX_BATCH - len(self._spares)))

        def grant_all(client: Any) -> None:
            label = client._current_endpoint_label
            stub = client.leasestub
            left = [start for start in todo if start.lease is None]  # a retry: the rest
            granted_at = time.monotonic()
            if len(left) == 1 and not ahead:  # alone, a blocking call costs less than a future
                left[0].lease, left[0].granted_at = int(client.lease(left[0].ttl).id), granted_at
                return
            calls = [(start, stub.LeaseGrant.future(
                rpc_pb2.LeaseGrantRequest(TTL=start.ttl if start else todo[0].ttl),
                client.timeout, credentials=client.call_credentials, metadata=client.metadata))
                for start in left + [None] * ahead]
            failure: grpc.RpcError | None = None
            for start, call in calls:
                try:
                    lease = int(call.result().ID)
                except grpc.RpcError as error:
                    if start is not None:
                        failure = failure or error
                    continue
                if start is None:
                    self._spares.append((todo[0].ttl, lease, granted_at))
                else:
                    start.lease, start.granted_at = lease, granted_at
            if failure is not None:
                fail_endpoint(client, label, failure)  # as etcd3 does after a failed call
                raise failure

        if todo:
            try:
                self._connection.call("granting a lease" if len(todo) == 1
                                      else "granting %d leases" % len(todo), grant_all)
            except EtcdError as error:
                for start in todo:
                    if start.lease is None:
                        start.error = error
        # the granted go on to the next stage together, before their threads wake
        self._puts.queue([start for start in batch if start.error is None])

    def _put(self, batch: list[_Start]) -> None:
        """Every record of ``batch`` in one transaction; one put each if etcd refuses it for
        a reason that may be one record's."""

        def txn(client: Any) -> int:
            label = client._current_endpoint_label
            request = rpc_pb2.TxnRequest(success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                    key=start.key, value=start.value, lease=start.lease))
                for start in batch])
            try:
                response = client.kvstub.Txn(request, client.timeout,
                                             credentials=client.call_credentials,
                                             metadata=client.metadata)
            except grpc.RpcError as error:
                fail_endpoint(client, label, error)
                raise
            return int(response.header.revision)

        try:
            revision = self._connection.call(
                "writing %s" % batch[0].key.decode() if len(batch) == 1
                else "writing %d records" % len(batch), txn)
        except EtcdError as error:
            if len(batch) == 1 or isinstance(error, EtcdUnavailable):
                for start in batch:
                    start.error = error
                return
            log.info("%s; writing them one by one", error)
            for start in batch:
                self._put_alone(start)
            return
        for start in batch:
            start.revision = revision

    def _put_alone(self, start: _Start) -> None:
        try:
            start.revision = self._connection.put(start.key.decode(), start.value, start.lease)
        except EtcdError as error:
            start.error = error

    def _revoke_later(self, lease: int) -> None:
        """Revoke ``lease`` without waiting for the answer (etcd may be away: then the lease,
        which holds no key, expires by itself)."""
        def send(client: Any) -> None:
            call = client.leasestub.LeaseRevoke.future(
                rpc_pb2.LeaseRevokeRequest(ID=lease), client.timeout,
                credentials=client.call_credentials, metadata=client.metadata)
            with self._revokes_lock:
                self._revokes.add(call)
            call.add_done_callback(self._revoked)

        try:
            self._connection.call("revoking lease %x" % lease, send)
        except EtcdError as error:
            log.debug("could not revoke lease %x (it expires by itself): %s", lease, error)

    def _revoked(self, call: Any) -> None:
        with self._revokes_lock:
            self._revokes.discard(call)


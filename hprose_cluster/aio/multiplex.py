"""Many calls in flight on few connections: what full-duplex TCP and WebSocket share.

Both wires tag each request with a 4-byte id and let the server answer in any order.  A
``MuxConnection`` is an ``asyncio.Protocol`` holding a table of the calls waiting by id: the
subclass turns bytes into replies (``reply(id, body)``) and a request into bytes
(``encode(body, id)``); a thousand calls in flight cost a thousand futures, no task, no thread.

Why a cancelled call never harms the others: a request is handed to the transport whole, by
the loop step that made it, so no cancellation can leave half a frame on the wire; a cancelled
call only drops its id from the table, and its late reply is read and discarded.  (The first
request of a loop step is written at once; the ones after it in the same step are written
together at its end, one system call for many calls under load.)

Back pressure: while the transport's write buffer is over its high mark (the server is not
reading), new calls wait before writing anything, bounded by their deadline: one that runs out
there is a ``CallTimeout(sent=False)``, safe to try elsewhere.

``MuxTransport`` keeps ``connections`` of them per server URL, opened on first use, each call
going to the least busy one; a connection that breaks fails only its own calls.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from typing import Any

from ..deadline import Deadline
from ..errors import CallTimeout, ConfigError, ConnectError, TransportError
from ..transport.errors import refused_handshake, timed_out_unsent
from .base import copy_error, loop_deadline, retired_error, retrieve


class DeadConnection(Exception):
    """The connection broke before this call wrote anything: use a new one."""


class MuxConnection(asyncio.Protocol):
    """One connection carrying many calls, matched by request id."""

    what = "hprose"  # for messages: "hprose TCP", "hprose WebSocket"

    def __init__(self, url: str):
        self.url = url
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.error: TransportError | None = None  # set once: the connection is dead
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self.replies = 0
        self._paused = False
        self._writable: list[asyncio.Future[None]] = []
        # requests of this loop step after the first, written together at the end of it
        self._batch: list[tuple[int, bytes | list[bytes]]] | None = None

    # --- for subclasses -------------------------------------------------------------------

    def encode(self, body: bytes, request_id: int) -> bytes | list[bytes]:
        raise NotImplementedError

    def reply(self, request_id: int, body: bytes) -> None:
        """A reply arrived: hand it to its call (a call that gave up is ignored)."""
        self.replies += 1
        future = self.pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(body)

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.replies and refused_handshake(exc):
            # TLS 1.3: a server refusing our certificate says so with the first read; it
            # never accepted the connection, so nothing sent on it ran
            assert isinstance(exc, ssl.SSLError)
            error: TransportError = ConnectError(
                "%s refused the TLS handshake (%s): check the client certificate in "
                "ssl_context" % (self.url, exc.reason), url=self.url)
        else:
            reason = str(exc) if exc is not None else "connection closed"
            error = TransportError("%s connection to %s broke: %s" % (self.what, self.url, reason),
                                   url=self.url, sent=True)
        self.fail(error, exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    # --- calls ----------------------------------------------------------------------------

    def fail(self, error: TransportError, cause: BaseException | None = None, *,
             abort: bool = True) -> None:
        """Mark the connection dead, close it (``abort``: at once, dropping what is not sent
        yet; else after writing it), and fail every call waiting on it."""
        if self.error is not None:
            return
        if cause is not None:
            error.__cause__ = cause
        self.error = error
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        elif not self.closed.done():  # never connected: nothing will call connection_lost
            self.closed.set_result(None)
        pending, self.pending = self.pending, {}
        unsent = {request_id for request_id, _ in self._batch or ()}
        self._batch = None
        for request_id, future in pending.items():
            if not future.done():
                failure = copy_error(error)
                if request_id in unsent:  # still in our batch: it never left
                    failure.sent = False
                future.set_exception(failure)
        self._wake_writers()

    def shutdown(self, error: TransportError) -> None:
        """The client closes the connection (the WebSocket one says goodbye first)."""
        self.fail(error, abort=False)

    def _wake_writers(self) -> None:
        writers, self._writable = self._writable, []
        for future in writers:
            if not future.done():
                future.set_result(None)

    async def _wait_writable(self, at: float | None, deadline: Deadline) -> None:
        loop = asyncio.get_running_loop()
        while self._paused and self.error is None:
            future = loop.create_future()
            self._writable.append(future)
            try:
                async with asyncio.timeout_at(at):
                    await future
            except TimeoutError:
                raise timed_out_unsent(self.url, deadline, "waiting to send (the server is "
                                       "not reading)") from None
            finally:
                if future in self._writable:
                    self._writable.remove(future)

    async def call(self, request: bytes, at: float | None, deadline: Deadline) -> bytes:
        """Send ``request`` and wait for its reply until ``at`` (``loop.time()``; ``deadline``
        is the call's, for messages)."""
        if self._paused:
            await self._wait_writable(at, deadline)
        transport = self.transport
        if self.error is not None or transport is None or transport.is_closing():
            raise DeadConnection()
        pending = self.pending
        request_id = next(self._ids) & 0xFFFFFFFF
        while request_id == 0 or request_id in pending:
            request_id = next(self._ids) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        pending[request_id] = future
        data = self.encode(request, request_id)
        batch = self._batch
        if batch is not None:  # after the first of this loop step: one write at its end
            batch.append((request_id, data))
        else:  # the first goes out now; with others in flight, more are likely to follow
            _write(transport, data)
            if len(pending) > 1:
                self._batch = []
                loop.call_soon(self._write_batch)
        timer = None
        if at is not None:
            timer = loop.call_at(at, self._expire, future, deadline)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if pending.get(request_id) is future:
                del pending[request_id]
            retrieve(future)

    def _write_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.error is None and self.transport is not None:
            self.transport.writelines([part for _, data in batch
                                       for part in (data if isinstance(data, list) else (data,))])

    def _expire(self, future: "asyncio.Future[bytes]", deadline: Deadline) -> None:
        if not future.done():
            future.set_exception(CallTimeout("%s call to %s timed out after %s"
                                             % (self.what, self.url, deadline.describe()),
                                             url=self.url))


class MuxTransport:
    """``connections`` multiplexed connections to one server URL; the subclass opens one
    (``_open(limit)``, raising ``ConnectError``).  Use from one event loop."""

    what = "hprose"

    def __init__(self, url: str, connections: int):
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ConfigError("connections for %s must be a whole number >= 1, not %r"
                              % (url, connections))
        self.url = url
        self._slots: list[MuxConnection | None] = [None] * connections
        self._locks: list[asyncio.Lock] | None = None
        self._open_conns: set[MuxConnection] = set()
        self._generation = 0  # bumped by aclose(): a connect that was under way is dropped
        self._retired = False

    def retire(self) -> None:
        self._retired = True

    async def _open(self, limit: float | None) -> MuxConnection:
        raise NotImplementedError

    async def round_trip(self, request: bytes, deadline: Deadline | None = None) -> bytes:
        if deadline is None:
            deadline = Deadline(None)
        at = loop_deadline(deadline)
        for _ in range(3):
            conn = await self._connection(at, deadline)
            try:
                return await conn.call(request, at, deadline)
            except DeadConnection:
                continue  # it broke before our request went out; the next one is new
        raise ConnectError("%s connection to %s keeps closing" % (self.what, self.url),
                           url=self.url)

    async def aclose(self) -> None:
        """Close every connection (their calls fail with ``TransportError``) and wait until
        the sockets are closed."""
        self._generation += 1
        conns = list(self._open_conns)
        self._slots = [None] * len(self._slots)
        for conn in conns:
            conn.shutdown(TransportError("%s connection to %s was closed by the client"
                                         % (self.what, self.url), url=self.url, sent=True))
        for conn in conns:
            try:  # a peer that reads nothing more cannot hold aclose() for long
                async with asyncio.timeout(1.0):
                    await asyncio.shield(conn.closed)
            except TimeoutError:
                if conn.transport is not None:
                    conn.transport.abort()
                await conn.closed

    @property
    def in_flight(self) -> int:
        """Calls waiting for a reply on this transport's connections."""
        return sum(len(conn.pending) for conn in self._open_conns)

    async def _connection(self, at: float | None, deadline: Deadline) -> MuxConnection:
        """The least busy live connection; a new one in an empty (or dead) slot when there is
        no live one, or when the least busy one already has calls waiting."""
        best: MuxConnection | None = None
        free: int | None = None
        for index, conn in enumerate(self._slots):
            if conn is None or conn.error is not None:
                if free is None:
                    free = index
            elif best is None or len(conn.pending) < len(best.pending):
                best = conn
        if best is not None and (free is None or not best.pending):
            return best
        assert free is not None
        if self._locks is None:
            self._locks = [asyncio.Lock() for _ in self._slots]
        lock = self._locks[free]
        if best is not None and lock.locked():
            return best  # another call is opening that one already
        try:
            async with asyncio.timeout_at(at):
                await lock.acquire()
        except TimeoutError:
            raise timed_out_unsent(self.url, deadline, "waiting for a connection") from None
        try:
            conn = self._slots[free]
            if conn is None or conn.error is not None:
                conn = await self._connect(at)
                self._slots[free] = conn
            return conn
        finally:
            lock.release()

    async def _connect(self, at: float | None) -> MuxConnection:
        limit = getattr(self, "connect_timeout", None)
        if at is not None:
            left = max(0.0, at - asyncio.get_running_loop().time())
            limit = left if limit is None else min(limit, left)
        if self._retired:
            raise retired_error(self.url)
        generation = self._generation
        conn = await self._open(limit)
        if self._retired:  # it left while we were connecting: nothing sent yet
            conn.fail(retired_error(self.url))
            raise retired_error(self.url)
        if generation != self._generation:
            conn.fail(TransportError("%s connection to %s was closed by the client"
                                     % (self.what, self.url), url=self.url, sent=False))
            raise ConnectError("%s transport to %s was closed while connecting"
                               % (self.what, self.url), url=self.url)
        self._open_conns.add(conn)
        conn.closed.add_done_callback(lambda _: self._open_conns.discard(conn))
        return conn


def _write(transport: asyncio.Transport, data: bytes | list[bytes]) -> None:
    if isinstance(data, list):
        transport.writelines(data)
    else:
        transport.write(data)


def connect_options(ssl_context: Any, host: str) -> dict[str, Any]:
    """``loop.create_connection`` keywords for TLS (none without an ``ssl_context``)."""
    if ssl_context is None:
        return {}
    return {"ssl": ssl_context, "server_hostname": host}

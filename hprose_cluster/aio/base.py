"""What every asyncio transport shares: the interface, the scheme table, small helpers.

An ``AsyncTransport`` is the asyncio twin of ``transport.base.Transport``: ``round_trip`` moves
one encoded hprose request to one server and returns the reply bytes, raising the same
``hprose_cluster.errors`` types with the same ``sent`` meaning (False: the request certainly
never left, so failover may try another server whatever the call).  Encoding and decoding stay
in ``transport.base`` (``encode_request``/``decode_reply``), shared with the blocking clients.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from typing import Any, Callable, Protocol, TypeVar
from urllib.parse import urlsplit

from ..deadline import Deadline
from ..errors import ConfigError, ConnectError, TransportError
from ..transport import (HTTP_SCHEMES, TCP_SCHEMES, TLS_TCP_SCHEMES, UNIX_SCHEMES,
                         WEBSOCKET_SCHEMES)
from ..transport.errors import connect_failed

T = TypeVar("T")



class AsyncTransport(Protocol):
    url: str

    async def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """Send ``request``; return the reply body, all before ``deadline`` (the call's
        ``hprose_cluster.deadline.Deadline``, as for the blocking ``Transport``).

        ``ConnectError`` when the request never left, ``CallTimeout`` when no reply came in
        time (``sent=False`` if the time ran out before any of it went out),
        ``TransportError(sent=True)`` for any other failure after sending.  Cancelling the
        task frees the call's place and leaves the connection usable by every other call.
        """

    def retire(self) -> None:
        """The server left its domain: open no new connection to it.  A call that would need
        one fails with ``ConnectError`` (nothing sent: failover takes it elsewhere); calls on
        open connections go on, so a draining server can finish them."""

    @property
    def in_flight(self) -> int:
        """Calls under way on this transport's connections (a retired one closes at 0)."""

    async def aclose(self) -> None:
        """Close every connection (calls in flight fail); a later call opens new ones."""


def open_async_transport(url: str, *, ssl_context: Any = None, connections: int | None = None,
                         connect_timeout: float = 5.0, tcp_tls: bool = False) -> AsyncTransport:
    """An ``AsyncTransport`` for ``url``, by its scheme.

    ``connections``: full-duplex connections per server for ``tcp://``, ``ws://`` and
    ``unix:`` (default 1), most connections at once for ``http://`` (default 32).  TLS for
    hprose TCP as ``open_transport`` decides it: the TLS schemes (``tcps://``, ...), or
    ``tcp_tls`` for plain ``tcp://`` records; ``ssl_context`` (default: the system's trust
    store) verifies the server.
    """
    scheme = urlsplit(url).scheme.lower()
    options: dict[str, Any] = {"connect_timeout": connect_timeout, "ssl_context": ssl_context}
    if connections is not None:
        options["connections"] = connections
    if scheme in TCP_SCHEMES:
        from .tcp import AsyncTcpTransport
        if scheme in TLS_TCP_SCHEMES or tcp_tls:
            options["ssl_context"] = ssl_context or ssl.create_default_context()
        else:
            options["ssl_context"] = None
        return AsyncTcpTransport(url, **options)
    if scheme in HTTP_SCHEMES:
        from .http import AsyncHttpTransport
        return AsyncHttpTransport(url, **options)
    if scheme in WEBSOCKET_SCHEMES:
        from .websocket import AsyncWebSocketTransport
        return AsyncWebSocketTransport(url, **options)
    if scheme in UNIX_SCHEMES:
        from .tcp import AsyncUnixTransport
        return AsyncUnixTransport(url, **options)
    raise ConfigError("cannot call %r: unknown scheme %r (supported: %s)" % (
        url, scheme, ", ".join(TCP_SCHEMES + HTTP_SCHEMES + WEBSOCKET_SCHEMES + UNIX_SCHEMES)))


def connect_error(url: str, error: BaseException, limit: float | None) -> ConnectError:
    """``transport.errors.connect_failed`` for an error of ``loop.create_connection``: the one
    mapping of every transport, with asyncio's wording of an OS error ("Connect call failed
    (...)") replaced by what happened ("[Errno 111] Connection refused")."""
    if isinstance(error, OSError) and error.errno and not isinstance(error, ssl.SSLError):
        error = OSError(error.errno, os.strerror(error.errno))
    return connect_failed(url, error, limit)


def loop_deadline(deadline: Deadline) -> float | None:
    """``deadline`` on the running loop's clock (``loop.time()``, for ``call_at`` and
    ``asyncio.timeout_at``); None when it never expires."""
    left = deadline.remaining()
    return None if left is None else asyncio.get_running_loop().time() + left


def remaining(at: float | None, loop: asyncio.AbstractEventLoop) -> float | None:
    """Seconds left before ``at`` (``loop.time()``), never below 0; None: no limit."""
    if at is None:
        return None
    return max(0.0, at - loop.time())


def retired_error(url: str) -> ConnectError:
    return ConnectError("%s left its domain: no new connection is opened to it" % url, url=url)


def copy_error(error: TransportError) -> TransportError:
    """A fresh instance of ``error`` for one caller: one connection failure fails many calls,
    and raising one exception object from many tasks would mix their tracebacks."""
    fresh = type(error)(str(error), url=error.url, sent=error.sent)
    fresh.__cause__ = error.__cause__
    return fresh


def retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark a finished future's exception as seen (its caller was cancelled meanwhile), so
    asyncio does not log 'exception was never retrieved'."""
    if future.done() and not future.cancelled():
        future.exception()


async def in_thread(function: Callable[[], T], name: str) -> T:
    """Run a blocking ``function`` (an etcd read, a join) on a named daemon thread of its own
    and await its result without blocking the loop.  The thread ends with the function: none
    is left behind, as a pool thread would be.  A cancelled caller stops waiting; the
    function still runs to its end (callers that care serialise with a lock of their own)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            result = function()
        except BaseException as error:  # handed to the awaiting task
            outcome: tuple[bool, Any] = (False, error)
        else:
            outcome = (True, result)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return await future  # a cancelled caller cancels the future; settle() then drops the outcome

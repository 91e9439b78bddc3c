"""What the serving lifecycle and a protocol handler share: the connection record, the
handler interface and the lifecycle's states.  See ``serving.py`` for the lifecycle.

A transport plugs a ``ProtocolHandler`` into ``Serving``; it only speaks its protocol:

* ``serve_connection(conn)`` runs on the connection's own thread with a connected (and, for
  TLS, handshaken) blocking socket in ``conn.sock``; it returns when the connection is done
  (the lifecycle then closes the socket).  Around each request it calls
  ``serving.request_started(conn)`` -- False means "stopping: drop this request unexecuted
  and return" -- and ``serving.request_finished(conn)`` once the reply is written; or, for a
  request executed on the connection's own thread, ``begin_here``/``end_here``, the same
  without a lock.  Between requests, ``serving.keep_open(conn)`` says whether to wait for
  another one.
* ``quiesce(conn)``: the drain delay is over and the server no longer accepts; end this
  connection at its next request boundary.  (Default: shut it down now if no request is in
  flight on it.)
* ``abandon(conn)``: the drain time is over and requests are still in flight on ``conn``;
  last chance to tell the peer (HTTP answers 503).  The socket is shut down right after.
"""

from __future__ import annotations

import enum
import socket
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .serving import Serving

__all__ = ["State", "Connection", "ProtocolHandler", "ConnectionHandler", "current_connection"]


class State(enum.Enum):
    NEW = "new"              # constructed; nothing open
    LISTENING = "listening"  # the socket listens; not accepting yet (the address is known)
    SERVING = "serving"      # accepting and serving
    DRAINING = "draining"    # stop() began: deregistering, then the drain delay; still
                             # accepting and serving as before (clients see the server leave)
    STOPPING = "stopping"    # no longer accepting: ending connections, finishing requests
    STOPPED = "stopped"      # everything closed; a stopped server cannot be started again


class Connection:
    """One accepted connection, as the lifecycle tracks it.

    ``busy`` counts the requests in flight on it that were counted under the lifecycle's lock
    (``request_started``), ``served`` those answered; ``here`` is True while a request is
    executed on the connection's own thread (``begin_here``: that thread alone writes it and
    ``served_here``, without a lock); ``shut`` is set once the lifecycle shut it down (a
    request read after that must not be executed: its reply could not be sent, and the
    client must be able to trust that it did not run).  ``protocol`` is free for the
    handler's per-connection state.
    """

    __slots__ = ("sock", "peer", "thread", "busy", "served", "here", "served_here", "shut",
                 "protocol")

    def __init__(self, sock: socket.socket, peer: Any):
        self.sock = sock
        self.peer = peer
        self.thread: threading.Thread | None = None
        self.busy = 0
        self.served = 0
        self.here = False
        self.served_here = 0
        self.shut = False
        self.protocol: Any = None

    @property
    def in_flight(self) -> bool:
        """A request of this connection is being executed."""
        return bool(self.busy or self.here)

    def __repr__(self) -> str:
        return "<Connection %s busy=%d served=%d%s>" % (
            _peer_name(self.peer), self.busy + self.here, self.served + self.served_here,
            " shut" if self.shut else "")


class ProtocolHandler(Protocol):
    def serve_connection(self, conn: Connection) -> None:
        """Serve ``conn`` until it is done (runs on the connection's own thread)."""

    def quiesce(self, conn: Connection) -> None:
        """Stopping: end ``conn`` at its next request boundary (called under no lock)."""

    def abandon(self, conn: Connection) -> None:
        """The drain time ran out with requests in flight on ``conn``."""


class ConnectionHandler:
    """Defaults for the optional parts of ``ProtocolHandler``; ``serving`` is set by
    ``Serving`` when the handler is given to it."""

    serving: "Serving"

    def serve_connection(self, conn: Connection) -> None:
        raise NotImplementedError

    def quiesce(self, conn: Connection) -> None:
        self.serving.shut_if_idle(conn)

    def abandon(self, conn: Connection) -> None:
        pass


_local = threading.local()  # .conn: the connection a connection or worker thread serves


def current_connection() -> Connection | None:
    """The connection whose request this thread is serving (None outside any)."""
    return getattr(_local, "conn", None)


def _peer_name(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return "%s:%s" % peer[:2]
    return str(peer or "local")

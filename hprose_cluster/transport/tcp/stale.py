"""Is a pooled half-duplex connection still open, and was a request that failed on one read?

A server closes connections while they sit idle in the pool: after its idle timeout, and
when it stops (ours, like Go's, closes a connection right after answering its last request).
A request sent on such a connection was never read by the server, so it must not fail as
``sent`` (a ``ClusterClient`` would not retry a non-idempotent call on another server);
it goes on a new connection instead.  Two ways to tell, one before sending and one after:

- ``has_pending_input``: one ``poll`` on the idle connection (the server's FIN makes it
  readable).  It costs a system call per call, so the pool runs it only for a connection idle
  for ``STALE_CHECK_AFTER`` seconds or more, where an idle timeout may have closed it.
- ``refused_unread``: a request sent on a connection closed more recently meets a reset, and
  that proves it was not read (below).  This also covers the close that races with the send,
  which the poll could never see.
"""

from __future__ import annotations

import errno
import select
import socket

from ...deadline import Deadline
from .. import framing, streams

__all__ = ["STALE_CHECK_AFTER", "STALE_RESET_WAIT", "has_pending_input", "refused_unread"]

STALE_CHECK_AFTER = 1.0
"""Seconds an idle pooled connection may go unused and still be sent on without a poll."""

STALE_RESET_WAIT = 0.1
"""Seconds to wait, at most, for the reset that says a request met a closed connection (one
round trip: the request's bytes go out, the server's kernel answers them)."""

_RESETS = (errno.ECONNRESET, errno.EPIPE)


def has_pending_input(sock: socket.socket) -> bool:
    """True when an idle plain connection is readable: the server closed it or sent garbage.

    Not used for TLS, where a TLS 1.3 session ticket can sit unread on a healthy connection.
    """
    return type(sock) is streams.TimedSocket and bool(sock.idle_poll(0))  # type: ignore


def refused_unread(sock: socket.socket, error: BaseException, deadline: Deadline) -> bool:
    """``error`` ended a call on ``sock`` before any byte of the reply came (or before any
    byte of the request left): can the server not have read the request?

    - Sending failed before a byte left: nothing was sent.
    - The connection was reset (``ECONNRESET``, ``EPIPE``): its kernel threw away bytes it
      was given and nobody read -- the request arrived after the server closed, or was still
      unread in its buffer when it closed.  (A server that read the request and then
      *aborted* the connection, ``SO_LINGER`` 0, would look the same; servers close normally.)
    - The stream just ended (the server's FIN): the server closed either before the request
      came, then its kernel resets the connection when the request arrives, or after reading
      it (it crashed or stopped), then no reset follows.  So wait up to ``STALE_RESET_WAIT``
      for a socket error: ``EPIPE`` (the state a FIN leaves us in) or ``ECONNRESET`` mean
      unread; none means the request may have run.  Our own ``shutdown`` (``close()`` under
      a call) raises ``POLLHUP`` without a socket error and does not count.
    """
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return True
    if not isinstance(error, framing.ConnectionClosed) or not error.clean:
        return False
    wait = deadline.cap(STALE_RESET_WAIT) or 0.0
    try:
        poller = select.poll()
        poller.register(sock, 0)  # POLLERR, POLLHUP and POLLNVAL come anyway: nothing else
        poller.poll(-(-wait * 1000.0 // 1))
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in _RESETS
    except (OSError, ValueError):
        return False

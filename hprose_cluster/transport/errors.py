"""One mapping from socket, TLS and OS errors to the ``hprose_cluster.errors`` tree.

Every client transport raises exactly three kinds of failure, and failover depends on telling
them apart:

* ``ConnectError`` (``sent=False``): the request never left this process -- the connection
  could not be opened, the TLS handshake failed, the server refused our certificate.  Always
  safe to try elsewhere.
* ``CallTimeout``: no complete reply within the call's deadline; ``sent`` says whether any of
  the request went out.
* ``TransportError(sent=True)``: the connection broke after the request (or part of it) left.
  Retried elsewhere only for idempotent calls.

``connect_failed`` is for errors while opening a connection, ``call_failed`` for errors on an
open one.  Both name the URL and chain the original exception (``raise ... from error``).
"""

from __future__ import annotations

import ssl

from ..deadline import Deadline
from ..errors import CallTimeout, ConnectError, FrameError, TransportError
from .framing import ConnectionClosed, OversizedFrame

__all__ = ["connect_failed", "connect_error", "call_failed", "oversized_reply", "timed_out_unsent",
           "refused_handshake"]


_HTTP_REPLY = int.from_bytes(b"HTTP", "big")  # what an HTTP answer reads as a frame length


def oversized_reply(url: str, error: OversizedFrame) -> FrameError:
    """A reply whose declared length is over the limit; an HTTP answer (``HTTP/1.1 400 ...``
    read as a frame header) is named as such, so a wrong scheme in a record is plain."""
    if error.length == _HTTP_REPLY:
        return FrameError("%s is not speaking hprose TCP: it answered in HTTP (should its "
                          "record say http://?)" % url, url=url)
    return FrameError("reply from %s refused: %s" % (url, error), url=url)


def connect_failed(url: str, error: BaseException, limit: float | None = None) -> ConnectError:
    """The connection to ``url`` could not be opened (``limit``: the connect timeout used)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return ConnectError("TLS certificate verification failed for %s: %s"
                            % (url, error.verify_message or error), url=url)
    if isinstance(error, ssl.SSLError):
        return ConnectError("TLS handshake with %s failed: %s" % (url, error), url=url)
    if isinstance(error, TimeoutError):
        after = " after %.3gs" % limit if limit is not None else ""
        return ConnectError("cannot connect to %s: timed out%s" % (url, after), url=url)
    return ConnectError("cannot connect to %s: %s" % (url, error), url=url)


def connect_error(url: str, error: BaseException, limit: float | None, deadline: Deadline,
                  connect_timeout: float | None) -> CallTimeout | ConnectError:
    """Opening a connection for a call failed: a ``CallTimeout`` (``sent=False``) when it
    was the call's deadline, not ``connect_timeout``, that ran out; else ``connect_failed``."""
    if isinstance(error, TimeoutError) and limit is not None and (
            connect_timeout is None or limit < connect_timeout):
        return timed_out_unsent(url, deadline, "while connecting")
    return connect_failed(url, error, limit)


def timed_out_unsent(url: str, deadline: Deadline, waiting: str = "before it was sent"
                     ) -> CallTimeout:
    """The deadline passed before any byte of the request left (``sent=False``)."""
    return CallTimeout("call to %s timed out after %s %s" % (url, deadline.describe(), waiting),
                       url=url, sent=False)


def refused_handshake(error: BaseException) -> bool:
    """True for the TLS alert a server sends when it refuses our client certificate.

    With TLS 1.3 that alert arrives after our side of the handshake is done, with the first
    read of a fresh connection.  The server never accepted the connection: nothing executed.
    """
    if not isinstance(error, ssl.SSLError):
        return False
    reason = error.reason or ""
    return "ALERT" in reason and ("CERTIFICATE" in reason or "_CA" in reason)


def call_failed(url: str, error: BaseException, deadline: Deadline, *, fresh: bool = False,
                what: str = "call") -> TransportError:
    """``error`` happened on an open connection to ``url`` once sending had begun.

    ``fresh``: the connection was opened for this call (so a certificate alert on it means the
    handshake was refused, not that the request ran).  ``what`` names the protocol for the
    message ("HTTP call", "hprose TCP call").
    """
    if isinstance(error, TransportError):
        return error
    if isinstance(error, TimeoutError):
        return CallTimeout("%s to %s timed out after %s" % (what, url, deadline.describe()),
                           url=url, sent=True)
    if isinstance(error, OversizedFrame):
        return oversized_reply(url, error)
    if isinstance(error, (ConnectionClosed, EOFError)):
        return TransportError("connection to %s closed by the server during the %s"
                              % (url, what), url=url, sent=True)
    if fresh and refused_handshake(error):
        assert isinstance(error, ssl.SSLError)
        return ConnectError("%s refused the TLS handshake (%s): check the client certificate "
                            "in ssl_context" % (url, error.reason), url=url)
    return TransportError("%s to %s failed: %s: %s" % (what, url, type(error).__name__, error),
                          url=url, sent=True)

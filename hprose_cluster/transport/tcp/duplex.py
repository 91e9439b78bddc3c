"""The full-duplex hprose TCP connection: many calls in flight on one socket.

Callers send frames with a request id under a send lock; one reader thread matches each reply
to its caller by id, in whatever order replies come.  When the connection breaks, every call
still waiting on it fails with the same error and the connection is marked dead; the
transport then opens a new one for the next call.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading

from ...deadline import Deadline
from ...errors import CallTimeout, FrameError, TransportError
from .. import framing, streams
from ..errors import oversized_reply
from ..streams import close_quietly

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["DeadConnection", "FullDuplexConnection"]


class DeadConnection(Exception):
    """The shared connection died before this call was sent: open a new one and retry."""


class _PendingCall:
    """One full-duplex call waiting for its reply."""

    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: bytes | None = None
        self.error: TransportError | None = None


class FullDuplexConnection:
    """One shared connection: callers send frames under a lock, a reader thread matches replies.

    When the connection breaks every call still waiting on it fails with the same error and the
    connection is marked dead; the transport then opens a new one for the next call.
    """

    def __init__(self, sock: socket.socket, url: str, max_frame: int):
        self.sock = sock
        # a TLS socket is read by the reader thread while callers write: see streams.SslIo
        self.io: streams.ByteStream = \
            streams.SslIo(sock) if isinstance(sock, ssl.SSLSocket) else sock
        self.url = url
        self.max_frame = max_frame
        self.dead = False
        self.retiring = False  # close as soon as no call is pending
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _PendingCall] = {}
        self._ids = itertools.count(1)
        self._reader = threading.Thread(
            target=self._read_loop, name="hprose-cluster-tcp-reader-%s" % url, daemon=True)
        self._reader.start()

    def call(self, request: bytes, deadline: Deadline) -> bytes:
        """Send ``request`` and wait for its reply, both within ``deadline``.

        A call is registered as pending only once it holds the send lock, so a connection
        abandoned by the caller ahead of it fails it as never sent (``DeadConnection``: the
        transport retries on a new connection), not as a request that may have run.
        """
        call = _PendingCall()
        remaining = deadline.remaining()
        if not self._send_lock.acquire(timeout=-1 if remaining is None else remaining):
            raise CallTimeout("hprose TCP call to %s timed out after %s waiting to send (the "
                              "server is not reading)" % (self.url, deadline.describe()),
                              url=self.url, sent=False)
        try:
            with self._lock:
                if self.dead:
                    raise DeadConnection()
                request_id = next(self._ids) & 0xFFFFFFFF
                while request_id in self._pending or request_id == 0:
                    request_id = next(self._ids) & 0xFFFFFFFF
                self._pending[request_id] = call
            # within the deadline, so that a server that stops reading cannot hold this caller,
            # or those queued behind it on the send lock, past their timeouts
            streams.send_before(self.io, framing.encode_full(request, request_id), deadline)
        except streams.SendTimeout as late:
            with self._lock:
                self._pending.pop(request_id, None)
            if late.partial:  # a frame cut short would corrupt every later one
                self._fail(TransportError("hprose TCP connection to %s abandoned: a request "
                                          "could not be sent in time" % self.url,
                                          url=self.url, sent=True), None)
            # a frame cut short is never executed: the server needs all of it, and gets no more
            raise CallTimeout("hprose TCP call to %s timed out after %s while sending (the "
                              "server is not reading)" % (self.url, deadline.describe()),
                              url=self.url, sent=False) from None
        except OSError as error:
            self._fail(TransportError(
                "hprose TCP call to %s failed while sending: %s" % (self.url, error),
                url=self.url, sent=True), error)
        finally:
            self._send_lock.release()
        if not call.event.wait(deadline.remaining()):
            with self._lock:
                self._pending.pop(request_id, None)
            if not call.event.is_set():
                raise CallTimeout("hprose TCP call to %s timed out after %s"
                                  % (self.url, deadline.describe()), url=self.url)
        if call.error is not None:
            # one error object is shared by every call the broken connection failed: raise a
            # copy per caller so that concurrent raises do not mix their tracebacks
            failure = call.error
            raise type(failure)(str(failure), url=failure.url,
                                sent=failure.sent) from failure.__cause__
        assert call.reply is not None
        return call.reply

    def _read_loop(self) -> None:
        reader = streams.FrameReader(self.io, self.max_frame)
        try:
            while True:
                frame = reader.read_frame()
                if frame.request_id is None:
                    raise FrameError(
                        "hprose TCP server %s answered a full-duplex request with a half-duplex "
                        "frame" % self.url, url=self.url)
                with self._lock:
                    call = self._pending.pop(frame.request_id, None)
                if call is None:  # its caller timed out; the late reply is dropped
                    logger.debug("dropping late reply %d from %s", frame.request_id, self.url)
                    continue
                call.reply = frame.body
                call.event.set()
                if self.retiring and not self._pending:
                    self.retire()
        except framing.OversizedFrame as error:
            self._fail(oversized_reply(self.url, error), error)
        except FrameError as error:
            self._fail(error, None)
        except (OSError, EOFError) as error:
            reason = "connection closed" if isinstance(error, EOFError) else str(error)
            self._fail(TransportError("hprose TCP connection to %s broke: %s" % (self.url, reason),
                                      url=self.url, sent=True), error)
        finally:
            # Only this thread closes the socket, and not while a caller is in send(): a
            # socket closed under another thread fails it with EBADF.  _fail() shut it down,
            # which ends any send in progress.
            with self._send_lock:
                close_quietly(self.sock)

    def _fail(self, error: TransportError, cause: BaseException | None) -> None:
        """Mark dead, shut the socket down (the reader thread closes it), and fail every
        waiting call with ``error``."""
        if cause is not None:
            error.__cause__ = cause
        with self._lock:
            first = not self.dead
            self.dead = True
            pending, self._pending = self._pending, {}
        if first and not isinstance(cause, EOFError):
            logger.debug("%s", error)
        streams.shutdown_socket(self.sock)
        for call in pending.values():
            call.error = error
            call.event.set()

    def retire(self) -> None:
        """Close once no call is pending (now, if none is).  A call arriving afterwards is
        refused before it is sent (``DeadConnection``), so the transport opens another."""
        with self._lock:
            self.retiring = True
            if self._pending or self.dead:
                return
            self.dead = True
        streams.shutdown_socket(self.sock)  # the reader thread ends and closes it

    def close(self) -> None:
        self._fail(TransportError("hprose TCP connection to %s was closed by the client"
                                  % self.url, url=self.url, sent=True), None)
        if self._reader is not threading.current_thread():
            self._reader.join()

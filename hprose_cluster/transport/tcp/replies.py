"""The reader role of a full-duplex hprose TCP connection (see ``duplex.py``).

Whichever waiting caller holds the role reads frames, hands other callers' replies to them
(waking them), and passes the role on once its own reply is in; a broken connection fails
every waiting call with the same error.  ``FullDuplexConnection`` adds the calls and sending.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from ...deadline import Deadline
from ...errors import CallTimeout, FrameError, TransportError
from .. import framing, streams
from ..errors import oversized_reply
from ..streams import close_quietly
from .stale import refused_unread

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["DeadConnection", "ReplyReader"]

_clock = time.monotonic
_word_from = int.from_bytes
_DONTWAIT = socket.MSG_DONTWAIT
_FULL = framing.FULL_DUPLEX_BIT
_MASK = framing.LENGTH_MASK
_RECV_CHUNK = streams.RECV_CHUNK
_MAX_RECV = 1024 * 1024
_MARGIN = streams.KERNEL_TIMEOUT_MARGIN


class DeadConnection(Exception):
    """The shared connection died before this call was sent (or read): retry on a new one.
    ``at``: when the call's time is up (``Deadline.at``), for the retry."""

    def __init__(self, at: float | None = None):
        super().__init__()
        self.at = at


_UNREAD = TransportError("the server closed the connection before reading the request")


class _PendingCall:
    """One full-duplex call waiting for its reply.  ``waker``: a held lock its thread sleeps
    on while another thread has the reader role; released once, by whoever hands it its
    reply, its error, or the reader role."""

    __slots__ = ("reply", "error", "waker")

    def __init__(self) -> None:
        self.reply: bytes | None = None
        self.error: TransportError | None = None
        self.waker: threading.Lock | None = None


class ReplyReader:
    """The state of one shared connection and the reading of its replies.

    Only a thread holding the reader role reads the socket and only one holding the send lock
    writes it; the socket is closed once the connection is dead and neither is held (the last
    thread out closes it), so no descriptor is ever closed under a thread using it.
    """

    def __init__(self, sock: socket.socket, url: str, max_frame: int):
        self.sock = sock
        # a TLS socket is read by one caller while others write: see streams.SslIo
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.io: streams.ByteStream = streams.SslIo(sock) if self.tls else sock  # type: ignore
        self.url = url
        self.max_frame = max_frame
        self.dead = False
        self._closed = False
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _PendingCall] = {}
        self._reading = False  # some thread holds the reader role
        self._decoder = framing.FrameDecoder(max_frame)
        self._empty = True  # the decoder holds nothing (kept by the reader role's holder)
        self._last_sent: _PendingCall | None = None  # whose request went out last

    def _timed_out(self, deadline: Deadline) -> CallTimeout:
        return CallTimeout("hprose TCP call to %s timed out after %s"
                           % (self.url, deadline.describe()), url=self.url)

    # --- the reader role -----------------------------------------------------------------

    def _lead(self, call: _PendingCall, request_id: int, deadline: Deadline,
              failed: OSError | None = None) -> None:
        """Holding the reader role: read frames until ``call`` has its reply, the deadline
        passes (CallTimeout) or the connection breaks (``call.error``; ``failed``: a receive
        of the caller's failed already); then pass the role on to a waiting caller."""
        decoder = self._decoder
        at = deadline.at
        timed_out = released = False
        sock = self.sock
        try:
            if failed is not None:
                raise failed
            while call.reply is None and call.error is None:
                empty = self._empty
                if not empty:
                    frame = decoder.next_frame()
                    if frame is not None:
                        self._empty = not decoder.buffered
                        self._deliver(frame.request_id, frame.body)
                        continue
                    data = self._recv(at, decoder.wanted())
                elif self.tls:
                    data = self.io.recv(_RECV_CHUNK, at)  # type: ignore[call-arg]
                elif (not sock.rcvtimeo if at is None  # type: ignore[attr-defined]
                      else 0.0 < sock.rcvtimeo <= at - _clock() - _MARGIN):  # type: ignore
                    try:  # the kernel timeout set ends before the deadline: just receive
                        data = sock.recv(_RECV_CHUNK)
                    except BlockingIOError:
                        data = streams.recv_before(sock, at)  # type: ignore[arg-type]
                else:
                    data = streams.recv_before(sock, at)  # type: ignore[arg-type]
                if not data:
                    decoder.closed()
                size = len(data)
                if size > 8 and empty:
                    # the common case: exactly one whole frame in one receive
                    word = _word_from(data[:4], "big")
                    if word & _FULL and (word & _MASK) + 8 == size \
                            and (word & _MASK) <= self.max_frame:
                        got = _word_from(data[4:8], "big")
                        if got != request_id:
                            self._deliver(got, data[8:])
                            continue
                        with self._lock:  # ours: take it and give up the role at once
                            if self._pending.pop(got, None) is call:
                                call.reply = data[8:]
                            self._reading = False
                            waker = self._pending and self._waiting_follower()
                        released = True
                        break
                decoder.feed(data)
                self._empty = False
        except TimeoutError:
            timed_out = True
        except framing.OversizedFrame as error:
            self._fail(oversized_reply(self.url, error), error)
        except FrameError as error:
            self._fail(error, None)
        except (OSError, EOFError) as error:
            reason = "connection closed" if isinstance(error, EOFError) else str(error)
            # a reset: the request sent last (none is going out) met a closed connection
            unread = None
            if refused_unread(sock, error, deadline) and not self._send_lock.locked():
                unread = self._last_sent
            self._fail(TransportError("hprose TCP connection to %s broke: %s" % (self.url, reason),
                                      url=self.url, sent=True), error, unread)
        finally:
            if not released:
                with self._lock:
                    self._reading = False
                    waker = self._pending and self._waiting_follower()
            if waker:
                waker.release()
            elif self.dead:
                self._close_if_unused()
        if timed_out:
            with self._lock:
                self._pending.pop(request_id, None)
                done = call.reply is not None or call.error is not None
            if not done:
                raise self._timed_out(deadline)

    def _recv(self, at: float | None, want: int) -> bytes:
        size = _RECV_CHUNK if want < _RECV_CHUNK else min(want, _MAX_RECV)
        if self.tls:
            return self.io.recv(size, at)  # type: ignore[call-arg]
        return streams.recv_before(self.sock, at, size)  # type: ignore[arg-type]

    def _deliver(self, request_id: int | None, body: bytes) -> None:
        """A reply came in: hand it to its call (waking its thread), or drop it (late)."""
        if request_id is None:
            raise FrameError("hprose TCP server %s answered a full-duplex request with a "
                             "half-duplex frame" % self.url, url=self.url)
        with self._lock:
            call = self._pending.pop(request_id, None)
            if call is None:  # its caller timed out; the late reply is dropped
                logger.debug("dropping late reply %d from %s", request_id, self.url)
                return
            call.reply = body
            waker, call.waker = call.waker, None
        if waker is not None:
            waker.release()

    def _waiting_follower(self) -> threading.Lock | None:
        """(Under the lock.)  The waker of a caller sleeping on its reply, taken: whoever
        releases it hands that caller the reader role."""
        for pending in self._pending.values():
            waker = pending.waker
            if waker is not None:
                pending.waker = None
                return waker
        return None

    def _pass_role(self) -> None:
        """Give up the reader role: to a caller sleeping on its reply, if there is one."""
        with self._lock:
            self._reading = False
            waker = self._waiting_follower()
        if waker is not None:
            waker.release()
        elif self.dead:
            self._close_if_unused()

    def _read_idle_input(self) -> None:
        """The connection was idle (reader role held for this): read without waiting what
        came meanwhile.  A late reply is dropped; the server's close or garbage makes the
        connection dead (nothing was sent yet)."""
        try:
            if self.tls:
                data = self.io.recv(_RECV_CHUNK, 0.0)  # type: ignore[call-arg]
            else:
                data = self.sock.recv(_RECV_CHUNK, _DONTWAIT)
            while True:
                if not data:
                    self._decoder.closed()
                self._decoder.feed(data)
                self._empty = False
                frame = self._decoder.next_frame()
                while frame is not None:
                    self._deliver(frame.request_id, frame.body)
                    frame = self._decoder.next_frame()
                if self.tls:
                    data = self.io.recv(_RECV_CHUNK, 0.0)  # type: ignore[call-arg]
                else:
                    data = self.sock.recv(_RECV_CHUNK, _DONTWAIT)
        except (BlockingIOError, TimeoutError):
            pass  # all read
        except framing.OversizedFrame as error:
            self._fail(FrameError("hprose TCP reply from %s refused: %s" % (self.url, error),
                                  url=self.url), error)
        except FrameError as error:
            self._fail(error, None)
        except (OSError, EOFError) as error:
            self._fail(TransportError("hprose TCP connection to %s closed while idle: %s"
                                      % (self.url, error), url=self.url, sent=False), error)
        finally:
            self._empty = not self._decoder.buffered
            self._pass_role()

    # --- failing and closing ---------------------------------------------------------------

    def _fail(self, error: TransportError, cause: BaseException | None,
              unread: _PendingCall | None = None) -> None:
        """Mark dead, shut the socket down (the last thread using it closes it), and fail
        every waiting call with ``error`` (``unread``, if waiting, with ``DeadConnection``)."""
        if cause is not None:
            error.__cause__ = cause
        with self._lock:
            first = not self.dead
            self.dead = True
            pending, self._pending = self._pending, {}
            wakers = []
            for call in pending.values():
                call.error = _UNREAD if call is unread else error
                if call.waker is not None:
                    wakers.append(call.waker)
                    call.waker = None
        if first and not isinstance(cause, EOFError):
            logger.debug("%s", error)
        streams.shutdown_socket(self.sock)
        for waker in wakers:
            waker.release()
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        """Close the socket of a dead connection once no thread reads or writes it."""
        with self._lock:
            if not self.dead or self._closed or self._reading or self._send_lock.locked():
                return
            self._closed = True
        close_quietly(self.sock)

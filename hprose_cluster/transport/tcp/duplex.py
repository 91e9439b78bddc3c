"""The full-duplex hprose TCP connection: many calls in flight on one socket.

Callers send frames with a request id under a send lock, and the callers themselves read the
replies (leader/follower): whichever waiting caller holds the *reader role* reads frames,
hands other callers' replies to them (waking them), and passes the role on once its own reply
is in.  With one calling thread that is one send and one receive in the caller, as in half
duplex, instead of two thread crossings per call through a reader thread; with many, one
wake-up per reply, as before.

Nobody reads while no call is pending, so a call that finds the connection idle for
``STALE_CHECK_AFTER`` or more first looks (one ``poll``) for what may have come meanwhile: a
late reply of a call that timed out (read and dropped), or the server's close, which makes the
connection dead before anything is sent (``DeadConnection``: the transport retries on a new
one).  A connection used more recently is sent on at once: a late reply is dropped by the
reader all the same, and a close is proved by the reset the request meets (``stale.py``):
the request sent last was then not read, and only that one is retried.  When the connection
breaks, every call still waiting on it fails with the same error and the connection is dead.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time

from ...deadline import Deadline, deadline_at
from ...errors import CallTimeout, TransportError
from .. import framing, streams
from .replies import _UNREAD, DeadConnection, ReplyReader, _PendingCall
from .stale import STALE_CHECK_AFTER

__all__ = ["DeadConnection", "FullDuplexConnection"]

_clock = time.monotonic
_pack_head = struct.Struct(">II").pack
_unpack_head = struct.Struct(">II").unpack_from
_new_lock = threading.Lock
_new = object.__new__
_DONTWAIT = socket.MSG_DONTWAIT
_FULL = framing.FULL_DUPLEX_BIT
_MASK = framing.LENGTH_MASK
_RECV_CHUNK = streams.RECV_CHUNK
_MARGIN = streams.KERNEL_TIMEOUT_MARGIN


class FullDuplexConnection(ReplyReader):
    """One shared connection (see the module docstring): the calls, sending, retiring and
    closing; ``ReplyReader`` has the state, the reader role and failing."""

    def __init__(self, sock: socket.socket, url: str, max_frame: int):
        super().__init__(sock, url, max_frame)
        self.retiring = False  # close as soon as no call is pending
        self._ids = itertools.count(1)
        self._checked_at = _clock()  # when a call last found it idle and polled, or started

    # --- one call ------------------------------------------------------------------------

    def call(self, request: bytes, deadline: Deadline | None,
             timeout: float | None = None) -> bytes:
        """Send ``request`` and wait for its reply, both within ``deadline`` (None: within
        ``timeout`` seconds from now; the ``Deadline`` is then made only if it is needed).

        A call is registered as pending only once it holds the send lock, so a connection
        abandoned by the caller ahead of it fails it as never sent (``DeadConnection``: the
        transport retries on a new connection), not as a request that may have run.
        """
        length = len(request)
        if length > _MASK:
            raise ValueError("hprose frame body too large: %d bytes" % length)
        now = _clock()
        if deadline is not None or timeout is None:
            at = None if deadline is None else deadline.at
        else:
            at = now + (timeout if type(timeout) is float else float(timeout))
        send_lock = self._send_lock
        if not send_lock.acquire(False):
            deadline = deadline or deadline_at(timeout, at)
            remaining = deadline.remaining()
            if not send_lock.acquire(timeout=-1 if remaining is None else remaining):
                raise CallTimeout("hprose TCP call to %s timed out after %s waiting to send "
                                  "(the server is not reading)"
                                  % (self.url, deadline.describe()), url=self.url, sent=False)
        call = _new(_PendingCall)  # no __init__ call on the hot path
        call.reply = call.error = call.waker = None
        lead = False  # took the reader role with the registration (the only call)
        try:
            while True:
                with self._lock:
                    if self.dead:
                        raise DeadConnection(at)
                    pending = self._pending
                    request_id = next(self._ids)
                    if pending or self._reading:
                        if request_id > 0xFFFFFFFF or request_id in pending:
                            request_id = self._free_id()
                        pending[request_id] = call
                        self._checked_at = now
                        break
                    if (now - self._checked_at < STALE_CHECK_AFTER and not self.tls) \
                            or not self._input_waiting():
                        # alone: nothing else can come but late replies, so this caller is
                        # the reader at once (no second turn of the lock for it)
                        if request_id > 0xFFFFFFFF:
                            request_id = self._free_id()
                        pending[request_id] = call
                        self._checked_at = now
                        lead = self._reading = True
                        break
                    self._reading = True  # idle, and something came: look at it first
                self._read_idle_input()
                now = _clock()
            frame = _pack_head(length | _FULL, request_id) + request
            length += 8
            sent = 0
            if not self.tls:
                try:
                    sent = self.sock.send(frame, _DONTWAIT)
                except BlockingIOError:
                    pass
                except OSError as error:
                    sent = length  # no more to write: the call fails below
                    self._fail(TransportError(
                        "hprose TCP call to %s failed while sending: %s" % (self.url, error),
                        url=self.url, sent=True), error)
            if sent != length:
                deadline = deadline or deadline_at(timeout, at)
                self._send_rest(frame, sent, request_id, deadline)
            self._last_sent = call
        except BaseException:
            if lead:  # the call ends here (timed out sending): the role goes on
                self._pass_role()
            raise
        finally:
            send_lock.release()
            if self.dead:
                self._close_if_unused()
        # the reply: read it ourselves while nobody else reads, else sleep until the reader
        # hands it over (or hands over the reader role)
        if lead:
            sock = self.sock
            if self._empty and not self.tls and (  # (now: microseconds ago, in the margin)
                    not sock.rcvtimeo if at is None  # type: ignore[attr-defined]
                    else 0.0 < sock.rcvtimeo <= at - now - _MARGIN):  # type: ignore
                # the one call's reply, as _lead reads it first: one whole frame, ours
                failed: OSError | None = None
                try:
                    data = sock.recv(_RECV_CHUNK)
                except BlockingIOError:  # its kernel timeout ended: _lead receives again
                    data = b""
                except OSError as error:  # _lead raises it where its failures are handled
                    data, failed = b"", error
                size = len(data)
                if size > 8:
                    word, got = _unpack_head(data, 0)
                    if word == (size - 8) | _FULL and got == request_id \
                            and size - 8 <= self.max_frame:
                        with self._lock:
                            if self._pending.pop(got, None) is call:
                                call.reply = reply = data[8:]
                            self._reading = False
                            waker = self._pending and self._waiting_follower()
                        if waker:
                            waker.release()
                        elif self.dead:
                            self._close_if_unused()
                        if call.reply is not None and not self.retiring:
                            return reply
                        data = b""
                if data:
                    self._decoder.feed(data)  # anything else: the reader loop takes it
                    self._empty = False
                if call.reply is None and call.error is None:
                    deadline = deadline or deadline_at(timeout, at)
                    self._lead(call, request_id, deadline, failed)
            elif call.reply is None and call.error is None:
                deadline = deadline or deadline_at(timeout, at)
                self._lead(call, request_id, deadline)
        deadline = deadline or deadline_at(timeout, at)
        while call.reply is None and call.error is None:
            with self._lock:
                if call.reply is None and call.error is None:
                    if not self._reading:
                        self._reading = True
                        waker = None
                    else:
                        waker = call.waker = _new_lock()
                        waker.acquire()
            if call.reply is not None or call.error is not None:
                break
            if waker is None:
                self._lead(call, request_id, deadline)
                continue
            remaining = deadline.remaining()
            if not waker.acquire(timeout=-1 if remaining is None else remaining):
                with self._lock:
                    if call.waker is waker:  # nobody is about to wake us: our time is up
                        call.waker = None
                        if call.reply is None and call.error is None:
                            self._pending.pop(request_id, None)
                            raise self._timed_out(deadline)
        if call.error is not None:
            if call.error is _UNREAD:
                raise DeadConnection(at)
            # one error object is shared by every call the broken connection failed: raise a
            # copy per caller so that concurrent raises do not mix their tracebacks
            failure = call.error
            raise type(failure)(str(failure), url=failure.url,
                                sent=failure.sent) from failure.__cause__
        if self.retiring and not self._pending:
            self.retire()
        return call.reply  # type: ignore[return-value]

    def _free_id(self) -> int:
        """(Under the lock.)  The next request id not in use, the counter wrapped at 2**32."""
        while True:
            request_id = next(self._ids)
            if request_id > 0xFFFFFFFF:
                self._ids = itertools.count(1)
                continue
            if request_id not in self._pending:
                return request_id

    def _input_waiting(self) -> bool:
        """Something to read on the idle connection (or it is unusable)?  One poll."""
        if self.tls:
            return bool(self.sock.pending()) or streams.readable_now(self.sock)  # type: ignore
        return bool(self.sock.idle_poll(0))  # type: ignore[attr-defined]

    def _send_rest(self, frame: bytes, sent: int, request_id: int, deadline: Deadline) -> None:
        """Write what one non-blocking send did not (under the send lock), within the
        deadline, so that a server that stops reading cannot hold this caller, or those
        queued behind it, past their time."""
        try:
            streams.send_before(self.io, memoryview(frame)[sent:] if sent else frame,
                                deadline)
        except streams.SendTimeout as late:
            with self._lock:
                self._pending.pop(request_id, None)
            if late.partial or sent:  # a frame cut short would corrupt every later one
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

    # --- failing and closing ---------------------------------------------------------------

    def retire(self) -> None:
        """Close once no call is pending (now, if none is).  A call arriving afterwards is
        refused before it is sent (``DeadConnection``), so the transport opens another."""
        with self._lock:
            self.retiring = True
            if self._pending or self.dead:
                return
            self.dead = True
        streams.shutdown_socket(self.sock)
        self._close_if_unused()

    def close(self) -> None:
        self._fail(TransportError("hprose TCP connection to %s was closed by the client"
                                  % self.url, url=self.url, sent=True), None)

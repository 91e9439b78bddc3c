"""One open hprose WebSocket on the client: calls multiplexed by request id.

Callers send their message under a send lock; one reader thread feeds the socket's bytes to
the sans-I/O protocol (``Channel``) and hands each reply to its caller by id, in whatever order
replies come.  When the connection breaks or closes, every call still waiting on it fails with
one error that says truthfully whether its request may have run (``sent``); the transport then
opens a new connection for the next call.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import ssl
import threading
from typing import Any

from websockets.exceptions import PayloadTooBig

from ...deadline import Deadline
from ...errors import CallTimeout, FrameError, TransportError
from ..errors import timed_out_unsent
from ..streams import SendTimeout, SslIo, close_quietly, send_before, shutdown_socket
from .protocol import DRAIN_CLOSE, RECV_SIZE, Channel, ChannelClosed, encode_payload

logger = logging.getLogger("hprose_cluster.transport.websocket")

__all__ = ["DeadConnection", "Connection"]


class DeadConnection(Exception):
    """The connection closed before this call's message went out: retry on a new one."""


class _Pending:
    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: bytes | None = None
        self.error: TransportError | None = None


class Connection:
    """One open WebSocket: callers send under a lock, a reader thread matches replies.

    The reader also has frames of its own to send (a pong, the echo of a close): it queues
    them and whoever holds the send lock, or the reader if nobody does, writes them between
    two messages, so the reader never waits behind a caller whose send is stuck.
    """

    def __init__(self, sock: socket.socket, channel: Channel, url: str,
                 early: list[bytes]):
        self.sock = sock
        self.io: Any = SslIo(sock) if isinstance(sock, ssl.SSLSocket) else sock
        self.channel = channel
        self.url = url
        self.dead = False
        self._lock = threading.Lock()  # pending, ids, dead, outbox
        self._send_lock = threading.Lock()  # writes to the socket
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._outbox: list[bytes] = []
        self._reader = threading.Thread(target=self._read_loop, args=(early,), daemon=True,
                                        name="hprose-cluster-ws-reader-%s" % url)
        self._reader.start()

    # --- calls ----------------------------------------------------------------------------

    def call(self, request: bytes, deadline: Deadline) -> bytes:
        call = _Pending()
        wait = deadline.remaining()
        if not self._send_lock.acquire(timeout=-1.0 if wait is None else wait):
            raise timed_out_unsent(self.url, deadline,
                                   "waiting to send (the server is not reading)")
        request_id = 0
        send_error: OSError | None = None
        try:
            with self._lock:
                if self.dead:
                    raise DeadConnection()
                request_id = next(self._ids) & 0xFFFFFFFF
                while request_id in self._pending or request_id == 0:
                    request_id = next(self._ids) & 0xFFFFFFFF
                self._pending[request_id] = call
            try:
                frame = self.channel.message(encode_payload(request_id, request))
            except ChannelClosed:
                with self._lock:
                    self._pending.pop(request_id, None)
                raise DeadConnection() from None
            send_before(self.io, self._take_outbox() + frame, deadline)
        except SendTimeout as late:
            with self._lock:
                self._pending.pop(request_id, None)
            if late.partial:  # a frame cut short would garble every later one
                self._fail(TransportError("hprose WebSocket connection to %s abandoned: a "
                                          "request could not be sent in time" % self.url,
                                          url=self.url, sent=True), None)
            # a message cut short is never executed: the server needs all of it
            raise timed_out_unsent(self.url, deadline,
                                   "while sending (the server is not reading)") from None
        except OSError as error:
            send_error = error
        finally:
            self._release_send_lock()
        if send_error is not None:
            # The server may have closed with DRAIN_CLOSE and then shut the socket: the
            # reader still has the close frame to read, and with it the truth about every
            # waiting call.  It gets a moment to say so before all are failed as sent.
            grace = deadline.cap(1.0)
            if not call.event.wait(1.0 if grace is None else grace):
                self._fail(TransportError("hprose WebSocket call to %s failed while sending: %s"
                                          % (self.url, send_error), url=self.url, sent=True),
                           send_error)
        if not call.event.wait(deadline.remaining()):
            with self._lock:
                self._pending.pop(request_id, None)
            if not call.event.is_set():
                raise CallTimeout("hprose WebSocket call to %s timed out after %s"
                                  % (self.url, deadline.describe()), url=self.url)
        if call.error is not None:
            # one error object is shared by every call of a broken connection: raise a copy
            failure = call.error
            raise type(failure)(str(failure), url=failure.url,
                                sent=failure.sent) from failure.__cause__
        assert call.reply is not None
        return call.reply

    # --- frames the reader must send ------------------------------------------------------

    def _take_outbox(self) -> bytes:
        with self._lock:
            if not self._outbox:
                return b""
            out, self._outbox = self._outbox, []
        return b"".join(out)

    def _release_send_lock(self) -> None:
        """Release the send lock, writing first whatever the reader queued meanwhile."""
        while True:
            queued = self._take_outbox()
            if queued:
                try:
                    send_before(self.io, queued, Deadline(2.0))
                except (OSError, SendTimeout):
                    pass  # the connection is going; the reader sees it break
            self._send_lock.release()
            with self._lock:
                if not self._outbox:
                    return
            if not self._send_lock.acquire(blocking=False):
                return  # its holder writes them

    def _queue(self, data: bytes) -> None:
        with self._lock:
            self._outbox.append(data)
        if self._send_lock.acquire(blocking=False):
            self._release_send_lock()

    # --- the reader -----------------------------------------------------------------------

    def _read_loop(self, early: list[bytes]) -> None:
        channel = self.channel
        try:
            for payload in early:  # messages that came with the handshake response
                self._deliver(payload)
            while True:
                received = channel.receive(self.io.recv(RECV_SIZE))
                if received.writes:
                    self._queue(received.writes)
                for payload in received.messages:
                    self._deliver(payload)
                if received.closed:
                    break
            self._fail(self._closed_error(), channel.error)
            self._finish_close()
        except FrameError as error:
            self._fail(error, None)
        except OSError as error:
            self._fail(TransportError("hprose WebSocket connection to %s broke: %s"
                                      % (self.url, error), url=self.url, sent=True), error)
        finally:
            # Only this thread closes the socket, and not while a caller is in send() (a
            # socket closed under another thread fails it with EBADF, or worse); _fail() shut
            # it down, which ends any send in progress.
            with self._send_lock:
                close_quietly(self.sock)

    def _deliver(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise FrameError("hprose WebSocket server %s sent a message of %d bytes, shorter "
                             "than a request id" % (self.url, len(payload)), url=self.url)
        request_id = int.from_bytes(payload[:4], "big")
        with self._lock:
            call = self._pending.pop(request_id, None)
        if call is None:  # its caller timed out; the late reply is dropped
            logger.debug("dropping late reply %d from %s", request_id, self.url)
            return
        call.reply = payload[4:]
        call.event.set()

    def _closed_error(self) -> TransportError:
        """What the calls still waiting get when the WebSocket closed under them."""
        channel = self.channel
        close = channel.close_received
        error = channel.error
        if isinstance(error, PayloadTooBig):
            return FrameError("hprose WebSocket reply from %s refused: %s" % (self.url, error),
                              url=self.url)
        if close is None:
            reason = "connection closed" if error is None or isinstance(error, EOFError) \
                else "protocol error: %s" % error
            return TransportError("hprose WebSocket connection to %s broke: %s"
                                  % (self.url, reason), url=self.url, sent=True)
        if close.code == DRAIN_CLOSE:
            # our server answered every request it read before this close and ran none after
            return TransportError("hprose WebSocket server %s closed the connection (draining) "
                                  "before reading the request" % self.url, url=self.url,
                                  sent=False)
        return TransportError("hprose WebSocket server %s closed the connection: %s"
                              % (self.url, close), url=self.url, sent=True)

    def _finish_close(self) -> None:
        """After a close frame: let the echo go out, then give the server a moment to close
        the TCP connection first, as RFC 6455 asks of a client."""
        if self._send_lock.acquire(timeout=1.0):
            self._release_send_lock()
        if not isinstance(self.sock, ssl.SSLSocket):
            try:
                select.select([self.sock], [], [], 1.0)
            except (OSError, ValueError):
                pass

    def _fail(self, error: TransportError, cause: BaseException | None) -> None:
        """Mark dead, close the socket, fail every waiting call with ``error``."""
        if cause is not None and error.__cause__ is None:
            error.__cause__ = cause
        with self._lock:
            first = not self.dead
            self.dead = True
            pending, self._pending = self._pending, {}
        if first:
            logger.debug("%s", error)
        if self.channel.close_received is None:  # else the reader ends the closing handshake
            shutdown_socket(self.sock)
        for call in pending.values():
            call.error = error
            call.event.set()

    def close(self) -> None:
        """Close politely (a close frame if the send lock is free), then the socket."""
        frame = b""
        try:
            frame = self.channel.close(1000)
        except Exception:  # closing anyway
            pass
        if frame and self._send_lock.acquire(blocking=False):
            try:
                send_before(self.io, frame, Deadline(0.2))
            except (OSError, SendTimeout):
                pass
            finally:
                self._send_lock.release()
        self._fail(TransportError("hprose WebSocket connection to %s was closed by the client"
                                  % self.url, url=self.url, sent=True), None)
        shutdown_socket(self.sock)  # the reader wakes, and closes it
        if self._reader is not threading.current_thread():
            self._reader.join(5.0)

"""How ``TcpServer``'s connections speak hprose TCP: read frames, execute, write replies.

Each connection has its own thread (the serving lifecycle's), which reads the frames.  The
mode is decided per frame, as the Go server does (``transport.framing``):

* a half-duplex request is executed on the connection's thread, so that connection's
  requests are answered one at a time, in order (what a Go client expects);
* a full-duplex request is answered with its id, possibly out of order.  It is executed on
  the connection's thread too when nothing else of that connection is running, no other
  frame is already waiting and none overlapped for ``CONCURRENT_WINDOW`` (one calling
  thread: no hand-off between threads at all); if it
  is still running one tick later, a worker takes over reading that connection meanwhile
  (``inline.py``), so the requests behind it are not held up.  Otherwise it goes to the
  lifecycle's bounded worker pool, at most ``max_pending`` per connection before that
  connection's reading waits (back pressure).

A small request that arrives as exactly one frame in one ``recv`` is answered straight from
those bytes; anything else goes through the connection's ``FrameDecoder``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from ...deadline import Deadline
from .. import framing, streams
from ..connection import Connection, ConnectionHandler

if TYPE_CHECKING:
    from .inline import InlineRunner
    from .server import TcpServer

logger = logging.getLogger("hprose_cluster.transport.tcp")

__all__ = ["TcpContext", "TcpConnectionState", "TcpProtocol"]

_clock = time.monotonic
_new = object.__new__
_pack_word = struct.Struct(">I").pack
_pack_full = struct.Struct(">II").pack  # a full-duplex frame's head: length | FULL, id
_unpack_word = struct.Struct(">I").unpack_from  # (data, offset) -> (word,)
_word_from = int.from_bytes
_DONTWAIT = socket.MSG_DONTWAIT
_FULL = framing.FULL_DUPLEX_BIT
_MASK = framing.LENGTH_MASK
_RECV_CHUNK = streams.RECV_CHUNK
_MAX_RECV = 1024 * 1024

CONCURRENT_WINDOW = 0.05
"""A connection whose full-duplex requests overlapped (one arrived while another ran, or
behind another) has its requests handed to workers for this long after: several callers
share it, and executing one on the reader's thread would hold up the others' replies
(8 calling threads: 25 % fewer calls per second)."""


class TcpContext:
    """The ``context`` hprose hands to filters, events and functions taking ``context``."""

    __slots__ = ("server", "peer", "request_id")

    def __init__(self, server: "TcpServer", peer: Any, request_id: int | None):
        self.server = server
        self.peer = peer
        self.request_id = request_id  # None for a half-duplex request

    def __repr__(self) -> str:
        return "TcpContext(peer=%r, request_id=%r)" % (self.peer, self.request_id)


class TcpConnectionState:
    """The TCP protocol's state for one connection (``Connection.protocol``).

    ``io``: the stream replies are written to (the socket, or ``SslIo``); ``send_lock``
    serialises replies; ``outstanding`` counts full-duplex requests handed to workers, and
    ``helped`` says a helper is reading (``inline.py``), both under ``cond``.  ``decoder``
    and the socket are read by the connection's thread, or by the helper while
    ``inline_since`` is set (then under ``read_lock``).  ``failure``: what ended the
    connection while the helper was reading.  ``watched``: the watchdog looks at this
    connection (``inline.py``).
    """

    __slots__ = ("conn", "io", "send_lock", "cond", "outstanding", "closed", "decoder",
                 "read_lock", "inline_since", "helped", "fed", "failure", "concurrent_until",
                 "watched", "idle_ticks")

    def __init__(self, conn: Connection, io: streams.ByteStream, max_frame: int):
        self.conn = conn
        self.io = io
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.outstanding = 0
        self.closed = False
        self.decoder = framing.FrameDecoder(max_frame)
        self.read_lock = threading.Lock()
        self.inline_since = 0.0  # when the full-duplex request running inline began
        self.helped = False  # a helper reads (or is about to) while a request runs inline
        self.fed = False  # the helper fed the decoder
        self.concurrent_until = 0.0  # full-duplex requests overlapped recently: no inline
        self.failure: BaseException | None = None
        self.watched = False  # in the watchdog's set (inline.py)
        self.idle_ticks = 0  # the watchdog's ticks since it last saw a request running inline


class TcpProtocol(ConnectionHandler):
    """How the lifecycle's connections speak hprose TCP."""

    def __init__(self, server: "TcpServer", inline: "InlineRunner"):
        self.server = server
        self.inline = inline

    def serve_connection(self, conn: Connection) -> None:
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            io: streams.ByteStream = streams.SslIo(sock)
        else:
            sock.settimeout(None)
            io = sock
        state = TcpConnectionState(conn, io, self.server.max_frame)
        conn.protocol = state
        try:
            self._read_requests(conn, state)
        except (ssl.SSLError, OSError) as error:
            if not state.closed and not conn.shut:
                logger.debug("hprose TCP connection from %s: %s", conn.peer, error)
        finally:
            with state.cond:  # let full-duplex replies of this connection go out first
                state.cond.wait_for(
                    lambda: (state.outstanding == 0 and not state.helped) or state.closed)
            if state.watched:
                self.inline.forget(state)

    def quiesce(self, conn: Connection) -> None:
        """No new requests; replies still go out."""
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_RD)
        except (OSError, ValueError):
            pass

    def abandon(self, conn: Connection) -> None:
        self.close(conn)

    def close(self, conn: Connection) -> None:
        state: TcpConnectionState | None = conn.protocol
        if state is not None:
            with state.cond:
                state.closed = True
                state.cond.notify_all()
        self.server._serving.shut(conn)

    # --- reading --------------------------------------------------------------------------

    def _read_requests(self, conn: Connection, state: TcpConnectionState) -> None:
        """Read and answer frames until the connection ends."""
        max_frame = self.server.max_frame
        recv = state.io.recv
        decoder = state.decoder
        answer = self.answer
        context = TcpContext(self.server, conn.peer, None)  # one per connection: nothing varies
        empty = True  # nothing in the decoder
        while True:
            try:
                if empty:
                    data = recv(_RECV_CHUNK)
                    size = len(data)
                    if size > 4:
                        word = _unpack_word(data)[0]
                        if word + 4 == size and word <= max_frame:
                            if not answer(conn, state, data[4:], -1, context):
                                return
                            continue
                        length = word & _MASK
                        if word & _FULL and length + 8 == size and length <= max_frame:
                            if state.outstanding or (state.concurrent_until
                                                     and _clock() < state.concurrent_until):
                                if state.outstanding:
                                    state.concurrent_until = _clock() + CONCURRENT_WINDOW
                                done = not self.dispatch(conn, state, framing.Frame(
                                    data[8:], _unpack_word(data, 4)[0]))
                            else:
                                done = not answer(conn, state, data[8:],
                                                  _unpack_word(data, 4)[0], context)
                                if state.fed:  # a helper read meanwhile
                                    state.fed = False
                                    empty = not decoder.buffered
                            if done:
                                return
                            continue
                    elif not data:
                        decoder.closed()
                    decoder.feed(data)
                frame = decoder.next_frame()
                while frame is None:
                    want = decoder.wanted()
                    data = recv(_RECV_CHUNK if want < _RECV_CHUNK else min(want, _MAX_RECV))
                    if not data:
                        decoder.closed()
                    decoder.feed(data)
                    frame = decoder.next_frame()
                empty = not decoder.buffered
            except framing.ConnectionClosed as closed:
                self.closed_while_reading(state, closed)
                return
            except framing.OversizedFrame as error:
                self.refused(state, error)
                return
            if frame.request_id is None:
                if not answer(conn, state, frame.body, -1, context):
                    return
            elif not empty or state.outstanding or (state.concurrent_until
                                                    and _clock() < state.concurrent_until):
                if not empty or state.outstanding:
                    state.concurrent_until = _clock() + CONCURRENT_WINDOW
                if not self.dispatch(conn, state, frame):
                    return
            else:
                if not answer(conn, state, frame.body, frame.request_id, context):
                    return
                if state.fed:
                    state.fed = False
                    empty = not decoder.buffered

    def closed_while_reading(self, state: TcpConnectionState,
                             closed: framing.ConnectionClosed) -> None:
        if not closed.clean and not state.closed and not state.conn.shut:
            logger.warning("hprose TCP connection from %s closed in the middle of a frame",
                           state.conn.peer)

    def refused(self, state: TcpConnectionState, error: framing.OversizedFrame) -> None:
        logger.error("hprose TCP server %s: closing connection from %s: %s",
                     self.server.url, state.conn.peer, error)

    # --- answering here -------------------------------------------------------------------

    def answer(self, conn: Connection, state: TcpConnectionState, body: bytes,
               request_id: int, context: TcpContext, here: bool = True) -> bool:
        """Execute one request on this thread and write its reply; False when the
        connection is finished.  ``request_id`` -1: half duplex, answered with ``context``
        (the connection's); else a full-duplex request executed inline (its own context),
        watched by ``inline.py`` so that a slow one gets a helper reading meanwhile.
        ``here``: this is the connection's own thread (not a helper).

        A request counts as in flight from its execution until its reply is written, so
        stop() never closes a connection between the two.  This is the hot path of a
        small call: one function for both modes, and on the connection's thread no lock.
        """
        server = self.server
        serving = server._serving
        if not (serving.begin_here(conn) if here else serving.request_started(conn)):
            return False
        try:
            if request_id < 0:
                reply = server._handle(body, context)
                length = len(reply)
                if length > _MASK:
                    raise ValueError("hprose frame body too large: %d bytes" % length)
                frame = _pack_word(length) + reply
            else:
                own = _new(TcpContext)  # no __init__ call: one per request
                own.server = server
                own.peer = conn.peer
                own.request_id = request_id
                state.inline_since = _clock()
                if not state.watched:
                    self.inline.watch(state)
                try:
                    reply = server._handle(body, own)
                finally:
                    state.inline_since = 0.0  # from here on no helper starts reading
                    if state.helped:  # one may be reading right now: wait for that read
                        with state.read_lock:
                            pass
                length = len(reply)
                if length > _MASK:
                    raise ValueError("hprose frame body too large: %d bytes" % length)
                frame = _pack_full(length | _FULL, request_id) + reply
            io = state.io
            if state.outstanding or state.helped or type(io) is streams.SslIo:
                sent = self.send(conn, frame)  # other writers: under the send lock
            else:  # the only writer: one non-blocking send, no lock
                try:
                    count = io.send(frame, _DONTWAIT)  # type: ignore[attr-defined]
                except BlockingIOError:
                    count = 0
                except OSError as error:
                    logger.debug("cannot answer %s: %s", conn.peer, error)
                    return False
                sent = count == len(frame) or self.send(
                    conn, memoryview(frame)[count:])  # type: ignore[arg-type]
        finally:
            if here:
                serving.end_here(conn)
            else:
                serving.request_finished(conn)
        if request_id >= 0 and state.failure is not None:
            return self._helper_failed(state)
        return sent

    def _helper_failed(self, state: TcpConnectionState) -> bool:
        """The helper's reading ended the connection while a request ran inline: False."""
        failure = state.failure
        if isinstance(failure, framing.ConnectionClosed):
            self.closed_while_reading(state, failure)
        elif isinstance(failure, framing.OversizedFrame):
            self.refused(state, failure)
        elif failure is not None:
            raise failure
        return False

    # --- full duplex ----------------------------------------------------------------------

    def dispatch(self, conn: Connection, state: TcpConnectionState,
                 frame: framing.Frame) -> bool:
        """Hand a full-duplex request to the worker pool (waiting while ``max_pending`` of
        this connection's are queued); False when the connection is closed."""
        with state.cond:
            state.cond.wait_for(
                lambda: state.outstanding < self.server._max_pending or state.closed)
            if state.closed:
                return False
            state.outstanding += 1
        self.server._serving.submit(conn, self._answer_full_duplex, conn, state, frame)
        return True

    def answer_full_duplex(self, conn: Connection, body: bytes, request_id: int
                           ) -> bytes | None:
        """Execute a full-duplex request; its reply frame, or None when stop() has shut the
        connection (then it is not executed)."""
        server = self.server
        serving = server._serving
        if not serving.request_started(conn):
            return None
        try:
            context = _new(TcpContext)  # no __init__ call: one per request, on the hot path
            context.server = server
            context.peer = conn.peer
            context.request_id = request_id
            reply = server._handle(body, context)
            length = len(reply)
            if length > _MASK:
                raise ValueError("hprose frame body too large: %d bytes" % length)
            return (((length | _FULL) << 32) | request_id).to_bytes(8, "big") + reply
        except BaseException:
            serving.request_finished(conn)
            raise

    def _answer_full_duplex(self, conn: Connection, state: TcpConnectionState,
                            frame: framing.Frame) -> None:
        """A worker's task."""
        try:
            reply = self.answer_full_duplex(conn, frame.body, frame.request_id or 0)
            if reply is not None:
                try:
                    self.send(conn, reply)
                finally:
                    self.server._serving.request_finished(conn)
        finally:
            with state.cond:
                state.outstanding -= 1
                state.cond.notify_all()

    # --- writing --------------------------------------------------------------------------

    def send(self, conn: Connection, data: bytes) -> bool:
        """Write one reply under the connection's send lock; False when the connection is
        no longer usable.

        A client that stops reading its replies would otherwise hold the writing thread (and,
        through the send lock, every worker answering it) for ever: after ``send_timeout``
        the connection is closed instead.
        """
        state: TcpConnectionState = conn.protocol
        send_timeout = self.server.send_timeout
        deadline = Deadline(send_timeout)
        try:
            if not state.send_lock.acquire(timeout=-1.0 if send_timeout is None
                                           else send_timeout):
                raise streams.SendTimeout(partial=False)
            try:
                streams.send_before(state.io, data, deadline)
            finally:
                state.send_lock.release()
            return True
        except streams.SendTimeout:
            if not state.closed:
                logger.warning("closing hprose TCP connection from %s: it read no reply for "
                               "%.3g s", conn.peer, send_timeout)
            self.close(conn)
            return False
        except OSError as error:
            logger.debug("cannot answer %s: %s", conn.peer, error)
            return False

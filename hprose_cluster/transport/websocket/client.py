"""The hprose WebSocket client transport (``ws://``, ``wss://``), as Go's WebSocketClient.

One connection per server URL carries every call: each request is one binary message (a
request id, then the body), a reader thread hands each reply to its caller in whatever order
replies come.  The WebSocket protocol itself is ``websockets``' sans-I/O ``ClientProtocol``
over our own socket, so the call's deadline bounds the connect, the TLS and WebSocket
handshakes, the send and the wait, exactly as on the TCP transport.

Failures map onto ``hprose_cluster.errors``: no connection or a refused handshake is
``ConnectError`` (``sent=False``); no reply in time is ``CallTimeout``; a connection that
breaks fails only the calls waiting on it, with ``TransportError(sent=True)``, or
``sent=False`` when our server closed it with ``DRAIN_CLOSE`` (it answered everything it had
read); a reply that is not a valid message, or bigger than ``max_message``, is
``FrameError``.  The next call opens a new connection.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any, Mapping

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI, PayloadTooBig
from websockets.http11 import Response
from websockets.uri import parse_uri

from ...deadline import Deadline
from ...errors import CallTimeout, ConfigError, ConnectError, FrameError, TransportError
from ..base import BaseClient
from ..errors import connect_failed, timed_out_unsent
from ..streams import SendTimeout, SslIo, close_quietly, send_before, shutdown_socket
from .protocol import (DEFAULT_MAX_MESSAGE, DRAIN_CLOSE, Channel, ChannelClosed,
                       encode_payload, parse_ws_url)

logger = logging.getLogger("hprose_cluster.transport.websocket")

__all__ = ["WebSocketTransport", "WebSocketClient"]

_RECV = 256 * 1024
_USER_AGENT = "hprose-cluster"


class _DeadConnection(Exception):
    """The connection closed before this call's message went out: retry on a new one."""


class _Pending:
    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: bytes | None = None
        self.error: TransportError | None = None


class _Connection:
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
        try:
            with self._lock:
                if self.dead:
                    raise _DeadConnection()
                request_id = next(self._ids) & 0xFFFFFFFF
                while request_id in self._pending or request_id == 0:
                    request_id = next(self._ids) & 0xFFFFFFFF
                self._pending[request_id] = call
            try:
                frame = self.channel.message(encode_payload(request_id, request))
            except ChannelClosed:
                with self._lock:
                    self._pending.pop(request_id, None)
                raise _DeadConnection() from None
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
            self._fail(TransportError("hprose WebSocket call to %s failed while sending: %s"
                                      % (self.url, error), url=self.url, sent=True), error)
        finally:
            self._release_send_lock()
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
                received = channel.receive(self.io.recv(_RECV))
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


class WebSocketTransport:
    """The hprose WebSocket wire for one server URL; implements ``transport.base.Transport``.

    ``ssl_context`` is used for ``wss://`` (default: ``ssl.create_default_context()``,
    certificates verified against the system store; Go's client skips verification).
    ``connect_timeout`` bounds the TCP connect and both handshakes (the call's timeout caps
    it).  Replies larger than ``max_message`` bytes (id included) fail the connection.
    ``headers`` go with the handshake request (``Origin``, ``Authorization``, ...).

    Thread-safe; ``close()`` closes the connection and joins its reader thread, and a later
    call opens a new one.
    """

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None,
                 connect_timeout: float | None = 5.0, max_message: int = DEFAULT_MAX_MESSAGE,
                 headers: Mapping[str, str] | None = None):
        self.secure, self.host, self.port, self.resource = parse_ws_url(url)
        self.url = url
        try:
            self._uri = parse_uri(url)
        except InvalidURI as error:
            raise ConfigError("bad hprose WebSocket URL %r: %s" % (url, error)) from error
        if not isinstance(max_message, int) or max_message < 5:
            raise ConfigError("max_message for %s must be an integer >= 5, not %r"
                              % (url, max_message))
        if connect_timeout is not None and connect_timeout <= 0:
            raise ConfigError("connect_timeout for %s must be positive, not %r"
                              % (url, connect_timeout))
        self.connect_timeout = connect_timeout
        self.max_message = max_message
        self.ssl_context = ssl_context
        if self.secure and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self._conn: _Connection | None = None

    def __repr__(self) -> str:
        return "WebSocketTransport(%r)" % (self.url,)

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """Send one request and return its reply body (see ``Transport.round_trip``)."""
        for _ in range(3):
            try:
                return self._connection(deadline).call(request, deadline)
            except _DeadConnection:
                # it closed before our message went out; the next connection is new
                if deadline.expired():
                    raise timed_out_unsent(self.url, deadline) from None
        raise ConnectError("hprose WebSocket connection to %s keeps closing" % self.url,
                           url=self.url)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "WebSocketTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- connecting -----------------------------------------------------------------------

    def _connection(self, deadline: Deadline) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.dead:
            return conn
        with self._lock:
            conn = self._conn
            if conn is None or conn.dead:
                if conn is not None:
                    conn.close()
                conn = self._open(deadline)
                self._conn = conn
            return conn

    def _open(self, deadline: Deadline) -> _Connection:
        """TCP connect, TLS, WebSocket handshake: all within one limit; any failure is a
        ``ConnectError`` (no request was sent)."""
        if deadline.expired():
            raise timed_out_unsent(self.url, deadline)
        limit = deadline.cap(self.connect_timeout)
        if limit is not None:
            limit = max(limit, 0.001)
        until = Deadline(limit)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=limit)
        except OSError as error:
            raise connect_failed(self.url, error, limit) from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            channel, early = self._handshake(sock, until)
            sock.settimeout(None)
        except ConnectError:
            close_quietly(sock)
            raise
        except OSError as error:  # timeouts, resets, TLS errors: nothing was sent
            close_quietly(sock)
            raise connect_failed(self.url, error, limit) from error
        return _Connection(sock, channel, self.url, early)

    def _handshake(self, sock: socket.socket, until: Deadline) -> tuple[Channel, list[bytes]]:
        """Send the upgrade request and read the 101.  Returns the channel and the messages
        that came in the same read as the response."""
        protocol = ClientProtocol(self._uri, max_size=self.max_message)
        request = protocol.connect()
        request.headers["User-Agent"] = _USER_AGENT
        for name, value in self.headers.items():
            if name in request.headers:
                del request.headers[name]
            request.headers[name] = value
        protocol.send_request(request)
        sock.sendall(b"".join(protocol.data_to_send()))
        channel = Channel(protocol)
        while True:
            sock.settimeout(until.socket_timeout())  # TimeoutError when none is left
            data = sock.recv(_RECV)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            for index, event in enumerate(events):
                if isinstance(event, Response):
                    self._check_response(protocol, event)
                    return channel, channel.assemble(events[index + 1:])
            if not data:
                raise ConnectError("hprose WebSocket server %s closed the connection during "
                                   "the handshake" % self.url, url=self.url)

    def _check_response(self, protocol: ClientProtocol, response: Response) -> None:
        error = protocol.handshake_exc
        if error is None:
            return
        if isinstance(error, InvalidStatus):
            raise ConnectError("hprose WebSocket server %s refused the upgrade: HTTP %d %s"
                               % (self.url, response.status_code, response.reason_phrase),
                               url=self.url) from error
        raise ConnectError("hprose WebSocket handshake with %s failed: %s" % (self.url, error),
                           url=self.url) from error


class WebSocketClient(BaseClient):
    """A drop-in hprose client over WebSocket: ``WebSocketClient("ws://127.0.0.1:8080/")``.

    ``timeout`` is the default per-call timeout (None waits for ever); the other options are
    ``WebSocketTransport``'s.
    """

    def __init__(self, uri: str, *, timeout: float | None = 30.0, simple: bool = False,
                 ssl_context: ssl.SSLContext | None = None, connect_timeout: float | None = 5.0,
                 max_message: int = DEFAULT_MAX_MESSAGE, headers: Mapping[str, str] | None = None):
        super().__init__(timeout=timeout, simple=simple)
        self.transport = WebSocketTransport(uri, ssl_context=ssl_context,
                                            connect_timeout=connect_timeout,
                                            max_message=max_message, headers=headers)

    @property
    def uri(self) -> str:
        return self.transport.url

    def _round_trip(self, request: bytes, deadline: Deadline, **options: Any) -> bytes:
        return self.transport.round_trip(request, deadline)

    def close(self) -> None:
        self.transport.close()

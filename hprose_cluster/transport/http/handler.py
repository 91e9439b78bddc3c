"""One HTTP/1.1 server connection: keep-alive, every reply with a Content-Length.

The request head is read with one ``recv`` into the connection's own buffer and parsed by
``framing.py`` (not ``http.server``/``http.client``, whose email-package header parser was
about half of a small call's CPU time); the body framing decisions are in ``framing.py`` too,
the lifecycle (in-flight count, drain, shut-down connections) in ``transport.serving``.
What a client sees is what ``http.server.BaseHTTPRequestHandler`` answered before: the same
status lines, error pages and limits (414 for a request line over 65,536 bytes, 431 for a
header line that long or more than 99 fields, 400/505 for a bad request line or version).

A plain socket stays in blocking mode with kernel timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``,
set once per connection to ``idle_timeout``): one system call per receive and per send.
"""

from __future__ import annotations

import html
import logging
import socket
import ssl
import struct
import threading
import time
from http import server as _stdlib
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..connection import Connection
from .framing import (CHUNKED, MAX_LINE, Headers, Refusal, body_framing, environ_base, http_date,
                      parse_field_block, parse_fields, parse_request_line, request_environ,
                      response_head)
from .reading import CHUNK, Reads, Refused

if TYPE_CHECKING:
    from .server import HttpServer

_log = logging.getLogger("hprose_cluster.transport.http")
_DEBUG = logging.DEBUG

_RESPONSES = BaseHTTPRequestHandler.responses
# the error page http.server writes (not in its typing stubs)
DEFAULT_ERROR_MESSAGE: str = getattr(_stdlib, "DEFAULT_ERROR_MESSAGE")
DEFAULT_ERROR_CONTENT_TYPE: str = getattr(_stdlib, "DEFAULT_ERROR_CONTENT_TYPE")
_TIMEVAL = struct.Struct("@ll").pack

# What an HTTP request can start with: a method's token characters, or the empty line
# RFC 9112 lets a client send before the request line.
_REQUEST_START = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           b"abcdefghijklmnopqrstuvwxyz\r\n")


class HttpConnectionState:
    """Per-connection state of the HTTP protocol (``Connection.protocol``).

    Replies are written under ``write_lock``; once stop() has given up on a running request
    (drain timeout) and answered 503 itself, ``abandoned`` keeps the late reply out.
    """

    __slots__ = ("write_lock", "abandoned")

    def __init__(self) -> None:
        self.write_lock = threading.RLock()
        self.abandoned = False


_CLOSE = b"Connection: close\r\n\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"
_METHODS = frozenset(("POST", "GET", "HEAD", "OPTIONS"))


class RequestHandler(Reads):
    """Serves one connection until it ends (``__init__`` runs it, as ``http.server``'s
    handlers do).  ``command``, ``path``, ``request_version`` and ``headers`` describe the
    current request; a subclass may override ``_serve_request`` (the WebSocket upgrade)."""

    protocol_version = "HTTP/1.1"
    server_version = "hprose-cluster"

    def __init__(self, conn: Connection, server: "HttpServer"):
        self.conn = conn
        self.server = server
        self.state: HttpConnectionState = conn.protocol
        self.serving = server._serving
        self.connection: socket.socket = conn.sock
        self.client_address = conn.peer
        self.command = ""
        self.path = ""
        self.request_version = "HTTP/1.0"
        self.headers = Headers()
        self.close_connection = True
        self._buf = b""
        self._environ: dict[str, Any] | None = None
        self._date: str | None = None  # the Date of ``_text_head``
        self._text_head = b""
        self._setup()
        self.handle()

    def _setup(self) -> None:
        """An idle keep-alive connection is closed after idle_timeout (and a client that
        reads no reply for that long is dropped)."""
        sock = self.connection
        idle = self.server.idle_timeout
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(idle)
            return
        sock.settimeout(None)
        value = _TIMEVAL(int(idle), int((idle - int(idle)) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    def hand_over(self) -> bytes:
        """Give the socket up (an upgraded connection): its kernel timeouts cleared, and
        the bytes already received past the request head."""
        sock = self.connection
        if not isinstance(sock, ssl.SSLSocket):
            none = _TIMEVAL(0, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, none)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, none)
        data, self._buf = self._buf, b""
        return data

    # --- the connection loop --------------------------------------------------------------

    def handle(self) -> None:
        self.close_connection = True
        while self.serving.keep_open(self.conn):
            try:
                self.handle_one_request()
            except (TimeoutError, BlockingIOError):
                _log.debug("%s: connection idle or stalled for %ss; closed",
                           self.address_string(), self.server.idle_timeout)
                return
            except OSError as error:  # reset, broken pipe, TLS error: nothing to answer
                _log.debug("%s: connection error: %r", self.address_string(), error)
                return
            if self.close_connection:
                return

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.command = ""
        self.request_version = "HTTP/1.0"
        try:
            if not self._read_head():
                return  # the client closed the connection
        except Refused as refused:
            self.send_error(*refused.refusal)
            self._linger()
            return
        if not self.serving.begin_here(self.conn):
            return  # stopping: close without a reply; the request was not executed
        try:
            self._serve_request()
        finally:
            self.serving.end_here(self.conn)

    # --- reading --------------------------------------------------------------------------

    def _read_head(self) -> bool:
        """Read and parse the request line and header fields; False when the client closed
        the connection before a request.  Raises ``Refused``."""
        buf = self._buf
        if not buf:
            buf = self._buf = self.connection.recv(CHUNK)
            if not buf:
                return False
        if buf[0] not in _REQUEST_START:
            # Not HTTP (a hprose TCP frame starts with a zero byte): answer now rather than
            # wait for the line end that never comes, so the peer learns at once.
            raise Refused(Refusal(400, "Not an HTTP request"))
        end = buf.find(b"\r\n\r\n")
        if 0 <= end < MAX_LINE and buf.count(b"\n", 0, end) == buf.count(b"\r\n", 0, end):
            # the common case: the whole head, CRLF throughout, short lines
            first = buf.find(b"\r\n")
            request = parse_request_line(buf[:first])
            if first < end:
                block = buf[first + 2:end + 2].decode("iso-8859-1")
                headers = parse_field_block(block, block.count("\r\n"))
            else:
                headers = Headers()
            self._buf = buf[end + 4:]
        else:
            lines = self._read_head_lines()
            request = parse_request_line(lines[0])
            headers = parse_fields(lines[1:])
        if isinstance(request, Refusal):
            raise Refused(request)
        self.command, self.path, self.request_version, keep_alive = request
        if isinstance(headers, Refusal):
            raise Refused(headers)
        self.headers = headers
        index = headers._index
        connection = index.get("connection")
        if connection is not None and connection[0].lower() == "close":
            self.close_connection = True
        elif keep_alive or (connection is not None and connection[0].lower() == "keep-alive"):
            self.close_connection = False
        expect = index.get("expect")
        if expect is not None and expect[0].lower() == "100-continue" \
                and self.request_version >= "HTTP/1.1":
            if self._body_framing() is None:
                raise Refused(Refusal(0, ""))  # already answered
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    # --- one request ----------------------------------------------------------------------

    def _body_framing(self) -> int | str | None:
        """The request body length, ``CHUNKED``, or None after answering 400/411/413/501."""
        framing = body_framing(self.headers.get_all("Transfer-Encoding"),
                               self.headers.get_all("Content-Length"), self.command,
                               self.server.max_body)
        if isinstance(framing, Refusal):
            self.send_error(*framing)
            return None
        return framing

    def _serve_request(self) -> None:
        if self.command not in _METHODS:
            self.send_error(501, "Unsupported method (%r)" % self.command)
            self._linger()
            return
        index = self.headers._index
        lengths = index.get("content-length")
        framing: int | str | None = None
        if lengths is not None and len(lengths) == 1 and "transfer-encoding" not in index:
            length = lengths[0]
            if length.isdigit() and length.isascii() and len(length) <= 20 \
                    and int(length) <= self.server.max_body:
                framing = int(length)  # the common case: one plain Content-Length
        if framing is None:
            framing = self._body_framing()
            if framing is None:
                self._linger()  # the body is left unread: this connection is finished
                return
        if framing == CHUNKED:
            body = self._read_chunked_body()
        else:
            assert isinstance(framing, int)
            if len(self._buf) >= framing:
                body, self._buf = self._buf[:framing], self._buf[framing:]
            else:
                body = self._read_body(framing)
        if body is None:
            return
        server = self.server
        try:
            base = self._environ
            if base is None:
                base = self._environ = environ_base(server.address, self.client_address,
                                                    server.scheme, server)
            headers = self.headers
            content_type = headers._index.get("content-type")
            environ = request_environ(base, self.command, self.path, self.request_version,
                                      headers._items, content_type[0] if content_type else "",
                                      body)
            if self.command == "POST" and server._posts_plainly():
                # hprose's handle() would answer _handle's reply, text/plain, and nothing
                # else (an exception there: an empty 200, through its ``finally: return``)
                try:
                    payload = server._handle(body, environ)
                except BaseException:
                    payload = b""
                if type(payload) is not bytes:
                    payload = payload.encode("utf-8") if isinstance(payload, str) \
                        else bytes(payload)
                self._send_text(payload)
                return
            status, reply_headers, parts = server.handle(environ)
            if status == "200 OK":
                code, reason = 200, "OK"
            else:
                code_text, _, reason = str(status).partition(" ")
                code = int(code_text)
            payload = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(
                p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in parts)
        except Exception:
            _log.exception("%s: %s %s failed in the hprose service", self.address_string(),
                           self.command, self.path)
            self.send_error(500)
            return
        self._send(code, reason, reply_headers, payload)

    def _refuse(self, code: int, message: str, explain: str | None = None) -> bytes | None:
        """Answer an error status, close politely; None, for ``return self._refuse(...)``."""
        self.send_error(code, message, explain)
        self._linger()
        return None

    # --- writing --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.connection.sendall(data)

    def write(self, data: bytes) -> None:
        """Write raw bytes (the WebSocket upgrade's reply)."""
        self._write(data)

    def _send_text(self, payload: bytes) -> None:
        """``_send(200, "OK", [("Content-Type", "text/plain")], payload)``, the same bytes,
        with the head's constant part made once a second (its Date)."""
        if self.serving.stopping:
            self.close_connection = True
        date = http_date()
        if date is not self._date:
            self._date = date
            self._text_head = response_head(
                self.protocol_version, 200, "OK", (("Content-Type", "text/plain"),), 0,
                close=False, keep_alive_10=False, server=self.server_version,
                date=date)[:-5]  # up to "Content-Length: " (without "0\r\n\r\n")
        head = self._text_head + b"%d\r\n" % len(payload) + (
            _CLOSE if self.close_connection else
            _KEEP_ALIVE if self.request_version == "HTTP/1.0" else b"\r\n")
        self._send_reply(head, payload, 200)

    def _send(self, code: int, reason: str, headers: list[tuple[str, str]],
              payload: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall)."""
        if self.serving.stopping:
            self.close_connection = True
        head = response_head(self.protocol_version, code, reason, headers, len(payload),
                             close=self.close_connection,
                             keep_alive_10=self.request_version == "HTTP/1.0",
                             server=self.server_version, date=http_date())
        self._send_reply(head, payload, code)

    def _send_reply(self, head: bytes, payload: bytes, code: int) -> None:
        """One reply in one write, unless the connection was given up meanwhile."""
        with self.state.write_lock:
            if self.state.abandoned:
                self.close_connection = True
                return
            self.connection.sendall(head if self.command == "HEAD" else head + payload)
        if _log.isEnabledFor(_DEBUG):
            self.log_message('"%s %s %s" %s %s', self.command, self.path, self.request_version,
                             code, len(payload))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """An error reply, as ``http.server`` writes it, with ``Connection: close``."""
        if not code:
            return  # answered already
        with self.state.write_lock:
            if self.state.abandoned:
                self.close_connection = True
                return
            short, long = _RESPONSES.get(code, ("???", "???"))
            message = short if message is None else message
            explain = long if explain is None else explain
            self.log_message("code %d, message %s", code, message)
            self.close_connection = True
            head = "%s %d %s\r\nServer: %s\r\nDate: %s\r\nConnection: close\r\n" % (
                self.protocol_version, code, message, self.server_version, http_date())
            body = b""
            if code >= 200 and code not in (204, 205, 304):
                body = (DEFAULT_ERROR_MESSAGE % {
                    "code": code, "message": html.escape(message, quote=False),
                    "explain": html.escape(explain, quote=False)}).encode("utf-8", "replace")
                head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (
                    DEFAULT_ERROR_CONTENT_TYPE, len(body))
            data = (head + "\r\n").encode("latin-1", "replace")
            self._write(data if self.command == "HEAD" else data + body)

    def _linger(self) -> None:
        """Close politely after an error reply sent without reading the request body.

        Closing a socket with unread input makes the kernel send RST, and the client may then
        lose our error reply.  So: stop writing, and discard (a bounded amount of) input for a
        moment, without ever holding it in memory.
        """
        self.close_connection = True
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            discarded = 0
            while discarded < 4 * 1024 * 1024 and time.monotonic() < deadline:
                data = self.connection.recv(CHUNK)
                if not data:
                    break
                discarded += len(data)
        except (OSError, ValueError):
            pass

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "local"

    def version_string(self) -> str:
        return self.server_version

    # --- logging: never to stderr ---------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("%s %s", self.address_string(), format % args)

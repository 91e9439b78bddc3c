"""One HTTP/1.1 server connection: keep-alive, every reply with a Content-Length.

Built on ``http.server.BaseHTTPRequestHandler`` for the request line and headers; the body
framing decisions are in ``framing.py``, the lifecycle (in-flight count, drain, shut-down
connections) in ``transport.serving``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..connection import Connection
from .framing import (CHUNKED, Refusal, body_framing, chunk_size, make_environ,
                      response_head)

if TYPE_CHECKING:
    from .server import HttpServer

_log = logging.getLogger("hprose_cluster.transport.http")

_CHUNK = 64 * 1024

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


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so even a garbled request line gets a status line
    server_version = "hprose-cluster"
    sys_version = ""
    disable_nagle_algorithm = False  # the lifecycle already set TCP_NODELAY
    server: "HttpServer"

    def __init__(self, conn: Connection, server: "HttpServer"):
        self.conn = conn
        self.state: HttpConnectionState = conn.protocol
        self.serving = server._serving
        super().__init__(conn.sock, conn.peer, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        super().setup()
        # an idle keep-alive connection is closed after idle_timeout
        self.connection.settimeout(self.server.idle_timeout)

    # --- the connection loop --------------------------------------------------------------

    def handle(self) -> None:
        self.close_connection = True
        while self.serving.keep_open(self.conn):
            try:
                self.handle_one_request()
            except TimeoutError:
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
        self.request_version = self.default_request_version
        first = self.rfile.peek(1)[:1]  # type: ignore[attr-defined]  # a BufferedReader
        if first and first[0] not in _REQUEST_START:
            # Not HTTP (a hprose TCP frame starts with a zero byte): answer now rather than
            # wait for the line end that never comes, so the peer learns at once.
            self.requestline = ""
            self.send_error(400, "Not an HTTP request")
            self._linger()
            return
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return  # the client closed the connection
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.send_error(414)
            self._linger()
            return
        if len(self.raw_requestline.split()) != 3:
            # HTTP/0.9 ("GET /") and junk: refuse rather than guess.
            self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
            self.send_error(400, "Bad request line")
            self._linger()
            return
        if not self.parse_request():
            self._linger()
            return  # parse_request answered (400, 431, 505, ...)
        if not self.serving.request_started(self.conn):
            return  # stopping: close without a reply; the request was not executed
        try:
            self._serve_request()
        finally:
            self.serving.request_finished(self.conn)

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before inviting the client to send it."""
        if self._body_framing() is None:
            return False
        return super().handle_expect_100()

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
        if self.command not in ("POST", "GET", "HEAD", "OPTIONS"):
            self.send_error(501, "Unsupported method (%r)" % self.command)
            self._linger()
            return
        framing = self._body_framing()
        if framing is None:
            self._linger()  # the body is left unread: this connection is finished
            return
        if framing == CHUNKED:
            body = self._read_chunked_body()
        else:
            assert isinstance(framing, int)
            body = self._read_body(framing)
        if body is None:
            return
        try:
            environ = make_environ(
                method=self.command, target=self.path, version=self.request_version,
                headers=self.headers.items(), content_type=self.headers.get("Content-Type", ""),
                body=body, server_address=self.server.address,
                client_address=self.client_address, scheme=self.server.scheme,
                server=self.server)
            status, headers, parts = self.server.handle(environ)
            code_text, _, reason = str(status).partition(" ")
            code = int(code_text)
            payload = b"".join(p.encode("utf-8") if isinstance(p, str) else bytes(p)
                               for p in parts)
        except Exception:
            _log.exception("%s: %s %s failed in the hprose service", self.address_string(),
                           self.command, self.path)
            self.send_error(500)
            return
        self._send(code, reason, headers, payload)

    def _read_body(self, length: int) -> bytes | None:
        """Read exactly ``length`` bytes in chunks, so memory follows what actually arrives."""
        chunks = []
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                _log.debug("%s: body ended after %d of %d bytes", self.address_string(),
                           length - remaining, length)
                self.close_connection = True
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_chunked_body(self) -> bytes | None:
        """Read a chunked body (RFC 9112 7.1) of at most ``max_body`` bytes.  None after
        answering 400/413, or when the client went away; the connection is then finished."""
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            if not line:
                self.close_connection = True
                return None
            size = chunk_size(line)
            if size is None:
                return self._refuse(400, "Bad chunk size line")
            if size == 0:
                break
            total += size
            if total > self.server.max_body:
                return self._refuse(413, "Payload Too Large",
                                    "The chunked body is larger than the limit of %d bytes."
                                    % self.server.max_body)
            data = self._read_body(size)
            if data is None:
                return None
            chunks.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                return self._refuse(400, "Chunk not followed by CRLF")
        for _ in range(64):  # trailer fields, ignored
            line = self.rfile.readline(8194)
            if not line:
                self.close_connection = True
                return None
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not line.endswith(b"\n"):
                break
        return self._refuse(400, "Bad or too many trailer fields")

    def _refuse(self, code: int, message: str, explain: str | None = None) -> bytes | None:
        """Answer an error status, close politely; None, for ``return self._refuse(...)``."""
        self.send_error(code, message, explain)
        self._linger()
        return None

    def _send(self, code: int, reason: str, headers: list[tuple[str, str]],
              payload: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall)."""
        if self.serving.stopping:
            self.close_connection = True
        head = response_head(self.protocol_version, code, reason, headers, len(payload),
                             close=self.close_connection,
                             keep_alive_10=self.request_version == "HTTP/1.0",
                             server=self.version_string(), date=self.date_time_string())
        with self.state.write_lock:
            if self.state.abandoned:
                self.close_connection = True
                return
            self.wfile.write(head if self.command == "HEAD" else head + payload)
        self.log_request(code, len(payload))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        with self.state.write_lock:
            if self.state.abandoned:
                self.close_connection = True
                return
            super().send_error(code, message, explain)

    def _linger(self) -> None:
        """Close politely after an error reply sent without reading the request body.

        Closing a socket with unread input makes the kernel send RST, and the client may then
        lose our error reply.  So: stop writing, and discard (a bounded amount of) input for a
        moment, without ever holding it in memory.
        """
        self.close_connection = True
        try:
            self.wfile.flush()
            socket.socket.shutdown(self.connection, socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            discarded = 0
            while discarded < 4 * 1024 * 1024 and time.monotonic() < deadline:
                data = self.connection.recv(_CHUNK)
                if not data:
                    break
                discarded += len(data)
        except (OSError, ValueError):
            pass

    def version_string(self) -> str:
        return self.server_version

    # --- logging: never to stderr ---------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("%s %s", self.address_string(), format % args)

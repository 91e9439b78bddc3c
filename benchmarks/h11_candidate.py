"""The h11 candidate measured by ``bench_http_framing.py``: HttpServer's connections parsed
with h11 instead of ``http.server`` plus our framing.  Complete enough for the hprose POST path
and error replies; not used by the package (it lost on server CPU per request)."""

from __future__ import annotations

import logging
import socket
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import h11

from hprose_cluster.transport.connection import Connection, ConnectionHandler
from hprose_cluster.transport.http.framing import ABANDONED_REPLY, make_environ, response_head
from hprose_cluster.transport.http.handler import HttpConnectionState

if TYPE_CHECKING:
    from hprose_cluster.transport.http.server import HttpServer

_log = logging.getLogger("hprose_cluster.transport.http")

_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024
_METHODS = (b"POST", b"GET", b"HEAD", b"OPTIONS")
_REASONS = {400: "Bad Request", 411: "Length Required", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 505: "HTTP Version Not Supported"}


class _Refused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class H11Protocol(ConnectionHandler):
    def __init__(self, server: "HttpServer"):
        self.server = server

    def abandon(self, conn: Connection) -> None:
        state: HttpConnectionState | None = conn.protocol
        if state is None or not state.write_lock.acquire(blocking=False):
            return
        try:
            if conn.busy and not state.abandoned:
                state.abandoned = True
                conn.sock.settimeout(0.5)
                conn.sock.sendall(ABANDONED_REPLY)
        except (OSError, ValueError):
            pass
        finally:
            state.write_lock.release()

    def serve_connection(self, conn: Connection) -> None:
        state = conn.protocol = HttpConnectionState()
        sock = conn.sock
        server = self.server
        serving = self.serving
        sock.settimeout(server.idle_timeout)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        while serving.keep_open(conn):
            try:
                event = self._next(h, sock)
                if not isinstance(event, h11.Request):
                    return  # closed
                request = event
                if request.method not in _METHODS:
                    raise _Refused(501, "Unsupported method")
                if request.http_version not in (b"1.1", b"1.0"):
                    raise _Refused(505, "HTTP Version Not Supported")
                length = None
                chunked = False
                for name, value in request.headers:
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        chunked = True
                if length is None and not chunked and request.method == b"POST":
                    raise _Refused(411, "Length Required")
                if length is not None and length > server.max_body:
                    raise _Refused(413, "Payload Too Large")
                if not serving.request_started(conn):
                    return
                try:
                    body = self._body(h, sock)
                    self._answer(conn, state, h, sock, request, body)
                finally:
                    serving.request_finished(conn)
            except h11.RemoteProtocolError as error:
                self._refuse(sock, state, error.error_status_hint, str(error))
                return
            except _Refused as refused:
                self._refuse(sock, state, refused.code, str(refused))
                return
            except TimeoutError:
                return
            if h.our_state is h11.MUST_CLOSE or serving.stopping:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    def _next(self, h: h11.Connection, sock: socket.socket) -> Any:
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(_CHUNK)
                h.receive_data(data)
                continue
            return event

    def _body(self, h: h11.Connection, sock: socket.socket) -> bytes:
        chunks = []
        total = 0
        while True:
            event = self._next(h, sock)
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > self.server.max_body:
                    raise _Refused(413, "Payload Too Large")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _Refused(400, "Bad request body")

    def _answer(self, conn: Connection, state: HttpConnectionState, h: h11.Connection,
                sock: socket.socket, request: h11.Request, body: bytes) -> None:
        server = self.server
        try:
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
            environ = make_environ(
                method=request.method.decode("ascii"), target=request.target.decode("latin-1"),
                version="HTTP/" + request.http_version.decode("ascii"), headers=headers,
                content_type=dict(headers).get("content-type", ""), body=body,
                server_address=server.address, client_address=conn.peer, scheme=server.scheme,
                server=server)
            status, reply_headers, parts = server.handle(environ)
            code_text, _, reason = str(status).partition(" ")
            code = int(code_text)
            payload = b"".join(p.encode("utf-8") if isinstance(p, str) else bytes(p)
                               for p in parts)
        except Exception:
            _log.exception("%r failed in the hprose service", request.target)
            code, reason, reply_headers, payload = 500, "Internal Server Error", [], b""
        out = [(n.encode("latin-1"), str(v).encode("latin-1")) for n, v in reply_headers
               if n.lower() not in ("content-length", "connection", "transfer-encoding")]
        out.append((b"content-length", b"%d" % len(payload)))
        out.append((b"server", b"hprose-cluster"))
        out.append((b"date", formatdate(time.time(), usegmt=True).encode("ascii")))
        if self.serving.stopping:
            out.append((b"connection", b"close"))
        data = h.send(h11.Response(status_code=code, headers=out, reason=reason.encode()))
        if request.method != b"HEAD":
            data += h.send(h11.Data(data=payload))
        data += h.send(h11.EndOfMessage())
        with state.write_lock:
            if state.abandoned:
                return
            sock.sendall(data)

    def _refuse(self, sock: socket.socket, state: HttpConnectionState, code: int,
                message: str) -> None:
        body = ("%d %s: %s\n" % (code, _REASONS.get(code, "Error"), message)).encode()
        head = response_head("HTTP/1.1", code, _REASONS.get(code, "Error"),
                             [("Content-Type", "text/plain")], len(body), close=True,
                             keep_alive_10=False, server="hprose-cluster",
                             date=formatdate(time.time(), usegmt=True))
        with state.write_lock:
            if state.abandoned:
                return
            try:
                sock.sendall(head + body)
                socket.socket.shutdown(sock, socket.SHUT_WR)
                sock.settimeout(0.5)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and sock.recv(_CHUNK):
                    pass
            except (OSError, ValueError):
                pass

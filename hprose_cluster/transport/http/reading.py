"""The reads of an HTTP server connection beyond the common case: a request head that did not
arrive whole in one receive (or has bare LF line ends or long lines), a body longer than what
came with the head, a chunked body.  ``RequestHandler`` (``handler.py``) reads the common
request -- head and body in one receive -- itself, and derives from ``Reads`` for the rest.

``Reads`` works on the handler's ``connection`` (a blocking socket) and ``_buf`` (what was
received and not consumed yet); a refusal is a ``Refused`` exception carrying the status to
answer, or, inside a body, an answer sent through the handler's ``_refuse``.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from .framing import MAX_HEADERS, MAX_LINE, Refusal, chunk_size, parse_request_line

__all__ = ["Reads", "Refused", "CHUNK"]

_log = logging.getLogger("hprose_cluster.transport.http")

CHUNK = 64 * 1024
"""What one receive asks for."""

_MAX_READ = 1024 * 1024


class Refused(Exception):
    """Answer this status and close (``refusal``: code, message, explain)."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


class Reads:
    """The uncommon reads of ``RequestHandler`` (see the module)."""

    connection: socket.socket
    close_connection: bool
    server: Any
    _buf: bytes

    def _refuse(self, code: int, message: str, explain: str | None = None) -> bytes | None:
        raise NotImplementedError

    def address_string(self) -> str:
        raise NotImplementedError

    def _more(self) -> bytes:
        """One receive; b"" at the end of the stream."""
        data = self.connection.recv(CHUNK)
        if data:
            self._buf += data
        return data

    def _read_head_lines(self) -> list[bytes]:
        """The head line by line (LF or CRLF line ends; at the end of the stream, what came),
        with the limits; the request line is checked as soon as it is in."""
        lines: list[bytes] = []
        pos = 0
        while True:
            newline = self._buf.find(b"\n", pos)
            if newline < 0:
                if len(self._buf) - pos >= MAX_LINE:
                    raise Refused(Refusal(414, "Request-URI Too Long") if not lines else
                                   Refusal(431, "Line too long"))
                if self._more():
                    continue
                line, end = self._buf[pos:], len(self._buf)  # the stream ended: what came
            else:
                if newline + 1 - pos > MAX_LINE:
                    raise Refused(Refusal(414, "Request-URI Too Long") if not lines else
                                   Refusal(431, "Line too long"))
                line, end = self._buf[pos:newline], newline + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
            pos = end
            if not lines:
                request = parse_request_line(line)
                if isinstance(request, Refusal):
                    raise Refused(request)
            elif not line:
                break
            lines.append(line)
            if len(lines) > MAX_HEADERS + 1:
                raise Refused(Refusal(431, "Too many headers"))
            if end == len(self._buf) and newline < 0:
                break
        self._buf = self._buf[pos:]
        return lines

    def _read_body(self, length: int) -> bytes | None:
        """Read exactly ``length`` bytes, so memory follows what actually arrives; None when
        the client went away first."""
        buf = self._buf
        if len(buf) >= length:
            self._buf = buf[length:]
            return buf[:length]
        chunks = [buf]
        remaining = length - len(buf)
        self._buf = b""
        recv = self.connection.recv
        while remaining > 0:
            chunk = recv(min(remaining, _MAX_READ))
            if not chunk:
                _log.debug("%s: body ended after %d of %d bytes", self.address_string(),
                           length - remaining, length)
                self.close_connection = True
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _readline(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, up to and including a LF; less at the end of the stream."""
        while True:
            newline = self._buf.find(b"\n", 0, limit)
            if newline >= 0:
                line, self._buf = self._buf[:newline + 1], self._buf[newline + 1:]
                return line
            if len(self._buf) >= limit or not self._more():
                line, self._buf = self._buf[:limit], self._buf[limit:]
                return line

    def _read_chunked_body(self) -> bytes | None:
        """Read a chunked body (RFC 9112 7.1) of at most ``max_body`` bytes.  None after
        answering 400/413, or when the client went away; the connection is then finished."""
        chunks = []
        total = 0
        while True:
            line = self._readline(1026)
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
            if self._readline(3) not in (b"\r\n", b"\n"):
                return self._refuse(400, "Chunk not followed by CRLF")
        for _ in range(64):  # trailer fields, ignored
            line = self._readline(8194)
            if not line:
                self.close_connection = True
                return None
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not line.endswith(b"\n"):
                break
        return self._refuse(400, "Bad or too many trailer fields")

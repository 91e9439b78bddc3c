"""Reading one HTTP reply on the client side, without ``http.client``.

The status line and header fields go through ``framing.py``'s strict parser (a small reply's
head and body usually come in one ``recv``); the body is framed as ``http.client`` frames it:
nothing for 204/304, chunked when the first Transfer-Encoding says so, else Content-Length
(its first value; unusable ones ignored), else up to the end of the stream.  Whether the
connection may be reused is ``http.client``'s rule too: HTTP/1.1 unless ``Connection`` says
``close``; HTTP/1.0 only with keep-alive; never after a close-delimited body.
"""

from __future__ import annotations

from typing import Callable

from ...deadline import Deadline
from ...errors import TransportError
from .framing import MAX_HEADERS, MAX_LINE, Headers, Refusal, chunk_size, parse_field_block, \
    parse_status_line

__all__ = ["StaleReply", "read_reply"]

_STALE_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_MAX_HEAD = MAX_LINE * (MAX_HEADERS + 1)
_MAX_READ = 1024 * 1024

Recv = Callable[..., bytes]  # recv(deadline[, size]) -> bytes, b"" at the end of the stream


class StaleReply(Exception):
    """Not a byte of a reply came: the connection ended (or was reset) first.  On a reused
    keep-alive connection that is a server that closed it while idle (the cause chained)."""


class _Input:
    """The bytes of one connection as they come: a buffer over ``recv``."""

    __slots__ = ("recv", "deadline", "buf")

    def __init__(self, recv: Recv, deadline: Deadline, buf: bytes):
        self.recv = recv
        self.deadline = deadline
        self.buf = buf

    def more(self, size: int = 64 * 1024) -> bool:
        data = self.recv(self.deadline, size)
        if data:
            self.buf += data
        return bool(data)

    def readline(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, up to and including a LF; less at the end of the stream."""
        while True:
            newline = self.buf.find(b"\n", 0, limit)
            if newline >= 0:
                line, self.buf = self.buf[:newline + 1], self.buf[newline + 1:]
                return line
            if len(self.buf) >= limit or not self.more():
                line, self.buf = self.buf[:limit], self.buf[limit:]
                return line

    def read(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes, or None when the stream ends first."""
        while len(self.buf) < length:
            if not self.more(min(length - len(self.buf), _MAX_READ)):
                return None
        data, self.buf = self.buf[:length], self.buf[length:]
        return data


def read_reply(recv: Recv, deadline: Deadline, max_body: int, url: str) -> tuple[bytes, bool]:
    """The body of a ``200`` reply and whether the connection may be kept.

    Raises ``StaleReply`` when the stream ended before any byte, ``TransportError``
    (``sent=True``) for another status, a malformed or oversized reply, a body cut short;
    ``OSError`` (``TimeoutError`` once the deadline passed) from the socket.
    """
    try:
        first = recv(deadline)
    except _STALE_ERRORS as error:
        raise StaleReply() from error
    if not first:
        raise StaleReply()
    data = _Input(recv, deadline, first)
    while True:
        version, status, reason, headers = _read_head(data, url)
        if status != 100:  # skip "100 Continue", as http.client does
            break
    index = headers._index
    if status != 200:
        # a status is not an hprose reply: a plain TransportError (the server got the request)
        snippet = data.buf[:200]
        if not snippet and index.get("content-length") != ["0"] and status not in (204, 304):
            try:
                data.more(200)
                snippet = data.buf[:200]
            except Exception:  # the status alone is the message; the snippet is a courtesy
                pass
        detail = (": " + snippet.decode("utf-8", "replace").strip()) if snippet else ""
        raise TransportError("HTTP %d %s from %s%s" % (status, reason, url, detail[:300]),
                             url=url, sent=True)
    connection = (index.get("connection") or [""])[0].lower()
    if version == "HTTP/1.1":
        keep = "close" not in connection
    else:
        keep = "keep-alive" in connection or "keep-alive" in index
    encoding = index.get("transfer-encoding")
    if encoding and encoding[0].lower() == "chunked":
        body = _read_chunked(data, max_body, url)
    else:
        declared = _content_length(index.get("content-length"))
        if declared is None:
            body = _read_to_end(data, max_body, url)
            keep = False
        else:
            if declared > max_body:
                raise TransportError("reply from %s declares %d bytes, more than max_body=%d; "
                                     "not read" % (url, declared, max_body), url=url, sent=True)
            buf = data.buf
            if len(buf) >= declared:
                body, data.buf = buf[:declared], buf[declared:]
            else:
                got = data.read(declared)
                if got is None:
                    raise TransportError("connection to %s closed after %d of %d reply bytes"
                                         % (url, len(data.buf), declared), url=url, sent=True)
                body = got
    if data.buf:  # bytes nobody asked for: do not reuse this connection
        keep = False
    return body, keep


def _content_length(values: list[str] | None) -> int | None:
    if not values:
        return None
    try:
        length = int(values[0])
    except ValueError:
        return None
    return length if length >= 0 else None


def _read_head(data: _Input, url: str) -> tuple[str, int, str, Headers]:
    """The status line and fields of the next head in ``data`` (which it consumes)."""
    while True:
        buf = data.buf
        end = buf.find(b"\r\n\r\n")
        if 0 <= end and buf.count(b"\n", 0, end) == buf.count(b"\r\n", 0, end):
            lines_end, body_start = end, end + 4
            crlf = True
            break
        lf = buf.find(b"\n\n")
        mixed = buf.find(b"\n\r\n")
        ends = [(p, p + 2) for p in (lf,) if p >= 0] + [(p, p + 3) for p in (mixed,) if p >= 0]
        if ends:
            lines_end, body_start = min(ends)
            crlf = False
            break
        if len(buf) > _MAX_HEAD:
            raise TransportError("HTTP call to %s failed: the reply's head is too long" % url,
                                 url=url, sent=True)
        if not data.more():
            raise TransportError("HTTP call to %s failed: the connection closed in the "
                                 "reply's head" % url, url=url, sent=True)
    head = buf[:lines_end]
    data.buf = buf[body_start:]
    if crlf:
        first = head.find(b"\r\n")
        status_line = head if first < 0 else head[:first]
        block = b"" if first < 0 else head[first + 2:] + b"\r\n"
    else:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
        status_line = lines[0]
        block = b"".join(line + b"\r\n" for line in lines[1:])
    if len(status_line) >= MAX_LINE or any(len(line) >= MAX_LINE
                                           for line in block.split(b"\r\n")):
        raise TransportError("HTTP call to %s failed: a line of the reply's head is over %d "
                             "bytes" % (url, MAX_LINE), url=url, sent=True)
    parsed = parse_status_line(status_line)
    if parsed is None:
        raise TransportError("HTTP call to %s failed: not an HTTP status line: %r"
                             % (url, status_line[:100]), url=url, sent=True)
    text = block.decode("iso-8859-1")
    headers = parse_field_block(text, text.count("\r\n"))
    if isinstance(headers, Refusal):
        raise TransportError("HTTP call to %s failed: %s in the reply (%s)"
                             % (url, headers.message.lower(), parsed[1]), url=url, sent=True)
    return parsed[0], parsed[1], parsed[2], headers


def _read_to_end(data: _Input, max_body: int, url: str) -> bytes:
    while data.more():
        if len(data.buf) > max_body:
            raise TransportError("reply from %s exceeds max_body=%d bytes" % (url, max_body),
                                 url=url, sent=True)
    body, data.buf = data.buf, b""
    if len(body) > max_body:
        raise TransportError("reply from %s exceeds max_body=%d bytes" % (url, max_body),
                             url=url, sent=True)
    return body


def _read_chunked(data: _Input, max_body: int, url: str) -> bytes:
    chunks = []
    total = 0
    while True:
        size = chunk_size(data.readline(1026))
        if size is None:
            raise TransportError("HTTP call to %s failed: a bad chunk size line in the reply"
                                 % url, url=url, sent=True)
        if size == 0:
            break
        total += size
        if total > max_body:
            raise TransportError("reply from %s exceeds max_body=%d bytes" % (url, max_body),
                                 url=url, sent=True)
        chunk = data.read(size)
        if chunk is None or data.readline(3) not in (b"\r\n", b"\n"):
            raise TransportError("HTTP call to %s failed: a chunk of the reply cut short"
                                 % url, url=url, sent=True)
        chunks.append(chunk)
    for _ in range(64):  # trailer fields, ignored
        line = data.readline(8194)
        if line in (b"\r\n", b"\n"):
            return b"".join(chunks)
        if not line.endswith(b"\n"):
            break
    raise TransportError("HTTP call to %s failed: bad or too many trailer fields in the reply"
                         % url, url=url, sent=True)

"""HTTP/1.1 request framing for the hprose server, without sockets.

What a request's headers say about its body (RFC 9112 section 6: Content-Length, chunked, or
an error to answer), the chunked coding's size lines, the reply head, and the WSGI-style
environ hprose's ``HproseHttpService.handle`` reads.  The connection handler
(``handler.py``) does the reading and writing; the decisions are here, testable on bytes.
"""

from __future__ import annotations

import io
import re
import sys
import urllib.parse
from typing import Any, Iterable, NamedTuple

__all__ = ["DEFAULT_MAX_BODY", "CHUNKED", "Refusal", "body_framing", "chunk_size",
           "response_head", "make_environ", "ABANDONED_REPLY"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"""Largest request (server) or reply (client) body accepted, in bytes."""

CHUNKED = "chunked"  # body_framing()'s answer for a chunked body

_DIGITS = re.compile(r"[0-9]{1,20}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

_ABANDONED_BODY = b"server stopped while this request was running; no result\n"
ABANDONED_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                   % (len(_ABANDONED_BODY), _ABANDONED_BODY))
"""What a request still running when the drain time ends is answered (see the server)."""

# Reply headers the server writes itself.
_OWN_HEADERS = ("content-length", "connection", "transfer-encoding")


class Refusal(NamedTuple):
    """An error status to answer instead of reading the body."""

    code: int
    message: str
    explain: str | None = None


def body_framing(transfer_encodings: list[str] | None, content_lengths: list[str] | None,
                 method: str, max_body: int) -> int | str | Refusal:
    """The body length, ``CHUNKED``, or the ``Refusal`` to answer (400/411/413/501).

    ``transfer_encodings`` and ``content_lengths`` are every value of those headers.
    """
    if transfer_encodings:
        if content_lengths:
            # two framings: a proxy in front may have read the other one (smuggling)
            return Refusal(400, "Both Content-Length and Transfer-Encoding")
        codings = [c.strip().lower() for c in ",".join(transfer_encodings).split(",")]
        if codings != [CHUNKED]:
            return Refusal(501, "Unsupported transfer coding",
                           "Only Transfer-Encoding: chunked is accepted.")
        return CHUNKED
    if not content_lengths:
        if method == "POST":
            return Refusal(411, "Length Required")
        return 0
    first = content_lengths[0].strip()
    if len(set(v.strip() for v in content_lengths)) != 1 or not _DIGITS.fullmatch(first):
        return Refusal(400, "Bad Content-Length")
    length = int(first)
    if length > max_body:
        return Refusal(413, "Payload Too Large",
                       "The body of %d bytes is larger than the limit of %d bytes."
                       % (length, max_body))
    return length


def chunk_size(line: bytes) -> int | None:
    """The size in a chunk-size line (extensions ignored), or None if it is not one."""
    size_text = line.split(b";", 1)[0].strip()
    if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
        return None
    return int(size_text, 16)


def response_head(version: str, code: int, reason: str, headers: Iterable[tuple[str, str]],
                  length: int, *, close: bool, keep_alive_10: bool, server: str,
                  date: str) -> bytes:
    """Status line and headers of a reply with a ``Content-Length`` body."""
    lines = ["%s %d %s" % (version, code, reason or "OK"), "Server: " + server, "Date: " + date]
    for name, value in headers:
        if name.lower() in _OWN_HEADERS:
            continue
        lines.append("%s: %s" % (name, value))
    lines.append("Content-Length: %d" % length)
    if close:
        lines.append("Connection: close")
    elif keep_alive_10:  # an HTTP/1.0 client asked for keep-alive; say we agree
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def make_environ(*, method: str, target: str, version: str, headers: Iterable[tuple[str, str]],
                 content_type: str, body: bytes, server_address: tuple[str, int] | None,
                 client_address: Any, scheme: str, server: Any) -> dict[str, Any]:
    """A WSGI-style environ: what HproseHttpService.handle reads and what hprose functions
    with a ``context`` argument receive."""
    path, _, query = target.partition("?")
    host, port = server_address or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, "iso-8859-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": version,
        "REMOTE_ADDR": client_address[0],
        "REMOTE_PORT": str(client_address[1]),
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "hprose_cluster.server": server,
    }
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            continue
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ

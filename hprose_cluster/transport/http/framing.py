"""HTTP/1.1 framing for the hprose server and client, without sockets.

The request line and header fields (a small strict parser: ``name: value`` lines, a token
for a name, no obsolete line folding, no whitespace before the colon; lines end in CRLF or
LF), what a request's headers say about its body (RFC 9112 section 6: Content-Length,
chunked, or an error to answer), the chunked coding's size lines, the status line of a reply,
the reply head, and the WSGI-style environ hprose's ``HproseHttpService.handle`` reads.  The
connection handler (``handler.py``) and the client (``client.py``) do the reading and
writing; the decisions are here, testable on bytes.

It replaces ``http.client.parse_headers`` (the email package's feed parser: about half of
the CPU time of a small call on each side) with the same limits: a line of at most 65,536
bytes, at most 99 header fields (http.client's 100 lines, the blank one included); 431 on
the server, an error on the client.
"""

from __future__ import annotations

import io
import re
import sys
import time
import urllib.parse
from email.utils import formatdate
from typing import Any, Iterable, Iterator, NamedTuple

__all__ = ["DEFAULT_MAX_BODY", "CHUNKED", "MAX_LINE", "MAX_HEADERS", "Refusal", "Headers",
           "RequestLine", "parse_request_line", "parse_fields", "parse_field_block",
           "body_framing", "chunk_size", "parse_status_line", "http_date", "response_head",
           "make_environ", "environ_base", "request_environ", "ABANDONED_REPLY"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"""Largest request (server) or reply (client) body accepted, in bytes."""

CHUNKED = "chunked"  # body_framing()'s answer for a chunked body

MAX_LINE = 65536
"""Longest request line or header field line, CRLF included (http.client's limit)."""

MAX_HEADERS = 99
"""Most header fields in one head: http.client's limit of 100 lines counts the blank line
that ends the head."""

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


class Headers:
    """The header fields of one message: looked up case-insensitively, every value of a
    name kept in order (the parts of ``email.message.Message`` the server, its functions'
    contexts and the WebSocket upgrade use: ``get``, ``get_all``, ``items``, ``[]``, ``in``).
    The server's hot path reads ``_index`` (lower-case name -> values) directly."""

    __slots__ = ("_items", "_index")

    def __init__(self, items: list[tuple[str, str]] | None = None):
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        for name, value in items or ():
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        values = self._index.get(name.lower())
        if values is None:
            self._index[name.lower()] = [value]
        else:
            values.append(value)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str, failobj: Any = None) -> Any:
        values = self._index.get(name.lower())
        return list(values) if values else failobj

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        return [value for _, value in self._items]

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "Headers(%r)" % (self._items,)


RequestLine = tuple  # (method, target, version "HTTP/1.1", keep_alive: HTTP/1.1 or later)


_HTTP11 = b"HTTP/1.1"
_new = object.__new__


def parse_request_line(line: bytes) -> RequestLine | Refusal:
    """``METHOD target HTTP/x.y`` (line end removed), or the ``Refusal`` to answer: 400
    for anything but three words or a bad version, 505 for HTTP/2 and later.  The checks
    are those of ``http.server.BaseHTTPRequestHandler``; HTTP/0.9 is refused."""
    words = line.split()
    if len(words) != 3:
        return Refusal(400, "Bad request line")
    method, target, version = words
    if version == _HTTP11:
        keep_alive = True
        text = "HTTP/1.1"
    else:
        text = version.decode("iso-8859-1")
        numbers = text[5:].split(".") if text.startswith("HTTP/") else []
        if len(numbers) != 2 or not all(n.isdigit() and n.isascii() and len(n) <= 10
                                        for n in numbers):
            return Refusal(400, "Bad request version (%r)" % text)
        major, minor = int(numbers[0]), int(numbers[1])
        if major >= 2:
            return Refusal(505, "Invalid HTTP version (%s)" % text[5:])
        keep_alive = (major, minor) >= (1, 1)
    path = target.decode("iso-8859-1")
    if path.startswith("//"):  # what http.server does (an open redirect otherwise)
        path = "/" + path.lstrip("/")
    return (method.decode("iso-8859-1"), path, text, keep_alive)


# Header fields, CRLF after each: a token, a colon, optional whitespace, a value without CR,
# LF or NUL (words with whitespace between them: no two parts of the pattern can match the
# same character, so matching stays linear), optional whitespace.  One findall splits a
# block and checks it: each match starts at a line start and ends at a CRLF, and no LF is
# elsewhere, so as many matches as lines means every line is a field line, whole.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE = r"(?:[^\r\n\x00 \t]+(?:[ \t]+[^\r\n\x00 \t]+)*)?"
_FIELDS = re.compile(r"(?m)^(%s):[ \t]*(%s)[ \t]*\r\n" % (_TOKEN, _VALUE))


def parse_fields(lines: list[bytes]) -> Headers | Refusal:
    """Header field lines (line ends removed) -> ``Headers``; 431 for more than
    ``MAX_HEADERS``, 400 for a line that is not ``token: value``."""
    if not lines:
        return Headers()
    return parse_field_block(b"\r\n".join(lines).decode("iso-8859-1") + "\r\n", len(lines))


def parse_field_block(block: str, count: int) -> Headers | Refusal:
    """Like ``parse_fields``, from the fields' text (decoded as ISO-8859-1) with CRLF after
    each of its ``count`` lines."""
    if count > MAX_HEADERS:
        return Refusal(431, "Too many headers")
    items = _FIELDS.findall(block)
    if len(items) != count or block.count("\n") != count:
        return Refusal(400, "Bad header line")
    headers = _new(Headers)  # without __init__'s call: the slots are set here
    headers._items = items
    index = headers._index = {}
    for name, value in items:
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return headers


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


def parse_status_line(line: bytes) -> tuple[str, int, str] | None:
    """``HTTP/1.1 200 OK`` (line end removed) -> ``(version, status, reason)``, None when
    it is not a status line."""
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/") or len(code) != 3 or not code.isdigit():
        return None
    return (version.decode("ascii", "replace"), int(code),
            reason.strip().decode("iso-8859-1"))


_date = [0, ""]


def http_date() -> str:
    """The Date header's value for now, formatted once per second."""
    now = int(time.time())
    if now != _date[0]:
        _date[1] = formatdate(now, usegmt=True)
        _date[0] = now
    return _date[1]  # type: ignore[return-value]


def response_head(version: str, code: int, reason: str, headers: Iterable[tuple[str, str]],
                  length: int, *, close: bool, keep_alive_10: bool, server: str,
                  date: str) -> bytes:
    """Status line and headers of a reply with a ``Content-Length`` body."""
    head = "%s %d %s\r\nServer: %s\r\nDate: %s\r\n" % (version, code, reason or "OK",
                                                       server, date)
    for name, value in headers:
        if name.lower() in _OWN_HEADERS:
            continue
        head += "%s: %s\r\n" % (name, value)
    head += "Content-Length: %d\r\n" % length
    if close:
        head += "Connection: close\r\n"
    elif keep_alive_10:  # an HTTP/1.0 client asked for keep-alive; say we agree
        head += "Connection: keep-alive\r\n"
    return (head + "\r\n").encode("latin-1", "replace")


def make_environ(*, method: str, target: str, version: str, headers: Iterable[tuple[str, str]],
                 content_type: str, body: bytes, server_address: tuple[str, int] | None,
                 client_address: Any, scheme: str, server: Any) -> dict[str, Any]:
    """A WSGI-style environ: what HproseHttpService.handle reads and what hprose functions
    with a ``context`` argument receive."""
    return request_environ(environ_base(server_address, client_address, scheme, server),
                           method, target, version, headers, content_type, body)


def environ_base(server_address: tuple[str, int] | None, client_address: Any, scheme: str,
                 server: Any) -> dict[str, Any]:
    """The part of the environ that is the same for every request of one connection."""
    host, port = server_address or ("", 0)
    return {
        "SCRIPT_NAME": "",
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "REMOTE_ADDR": client_address[0],
        "REMOTE_PORT": str(client_address[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "hprose_cluster.server": server,
    }


_ENV_KEYS: dict[str, str] = {}  # header name -> environ key, for names seen (bounded)


def request_environ(base: dict[str, Any], method: str, target: str, version: str,
                    headers: Iterable[tuple[str, str]], content_type: str,
                    body: bytes) -> dict[str, Any]:
    """``base`` (``environ_base``) plus one request's keys."""
    path, _, query = target.partition("?")
    environ = base.copy()
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = urllib.parse.unquote(path, "iso-8859-1") if "%" in path else path
    environ["QUERY_STRING"] = query
    environ["SERVER_PROTOCOL"] = version
    environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = io.BytesIO(body)
    keys = _ENV_KEYS
    for name, value in headers:
        key = keys.get(name)
        if key is None:
            key = "HTTP_" + name.upper().replace("-", "_")
            if len(keys) < 512:
                keys[name] = key
        if key == "HTTP_CONTENT_TYPE" or key == "HTTP_CONTENT_LENGTH":
            continue
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ

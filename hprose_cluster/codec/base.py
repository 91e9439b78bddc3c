"""The primitives of hprose_cluster.codec: the depth limit, numbers and strings."""

from __future__ import annotations

import codecs
from typing import Any

from hprose.common import HproseException
from hprose.io import HproseWriter

MAX_DEPTH = 4096
"""Deepest nesting of lists, maps and objects written or read (node sends up to ~1,000)."""

SMALL = [b"%d" % i for i in range(10)]
DIGITS = {digit: i for i, digit in enumerate(SMALL)}


def too_deep(what: str) -> HproseException:
    return HproseException("cannot %s a value nested deeper than %d levels (lists, maps and "
                           "objects inside one another)" % (what, MAX_DEPTH))


def read_token(read: Any, end: bytes) -> bytes:
    """The bytes before ``end`` (which is consumed) or the end of the stream: hprose's
    ``_readuntil``, without a list and a join per number."""
    found = bytearray()
    while True:
        c = read(1)
        if c == end or not c:
            return bytes(found)
        found += c


def read_count(read: Any, end: bytes) -> int:
    """hprose's ``_readint``: a decimal number before ``end``, 0 when there is none."""
    c = read(1)
    if c == end or not c:
        return 0
    d = read(1)
    if d == end or not d:
        return DIGITS[c] if c in DIGITS else int(c, 10)
    return int(c + d + read_token(read, end), 10)


# --- strings ------------------------------------------------------------------------------


def utf16_length(s: str) -> int:
    """Length of ``s`` in UTF-16 code units: what every hprose peer puts before a string."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) >> 1


def string_bytes(s: str) -> bytes:
    """``s<utf16 length>"<utf-8>"`` (``s""`` for the empty string, as 1.4.3 writes it)."""
    if not s:
        return b's""'
    data = s.encode("utf-8")
    length = len(data) if len(data) == len(s) else utf16_length(s)
    return b's%d"%s"' % (length, data)


def write_string(writer: HproseWriter, s: Any) -> None:
    """``writer.writeString(s)`` with a UTF-16 length; ``bytes`` are decoded as UTF-8."""
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s).decode("utf-8")
    writer.refer.set(s)
    writer.stream.write(string_bytes(s))


def read_string(stream: Any) -> str:
    """``<utf16 length>"<utf-8 bytes>"`` after the ``s`` tag, in one pass (see compat, 4)."""
    length = read_count(stream.read, b'"')
    chunk = stream.read(length)
    if len(chunk) == length and chunk.isascii():  # the common case: one read, no decoder
        stream.read(1)  # the closing quote
        return chunk.decode("ascii")
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    units = 0
    while True:
        if not chunk:
            raise HproseException("hprose string of %d UTF-16 units ends after %d"
                                  % (length, units))
        text = decoder.decode(chunk)
        if text:
            parts.append(text)
            units += len(text) if text.isascii() else utf16_length(text)
        if units >= length:
            break
        # as many bytes as units remain (every unit takes at least one byte), but a character
        # cut in two is finished byte by byte: a 4-byte one may have one byte left for two units
        chunk = stream.read(1 if decoder.getstate()[0] else length - units)
    stream.read(1)  # the closing quote
    return "".join(parts)

"""Minimal fast paths, to measure what the hot path could cost (profile_parts.py times them).

Not library code: each handles only the shapes a ``hello("w")`` call has (ASCII strings, small
ints, None, booleans; no references, no objects) and returns None for anything else, where a
real implementation would fall back to hprose's reader and writer.  They exist so that the
estimates in the findings can be re-measured, and as a reference for the bytes.
"""

from __future__ import annotations

from typing import Any, Callable


def encode_scalar(value: Any) -> bytes | None:
    kind = type(value)
    if kind is str:
        if not value.isascii():
            return None  # the UTF-16 length needs compat.utf16_length
        if len(value) == 1:
            return b"u" + value.encode()
        return b's%d"%s"' % (len(value), value.encode()) if value else b"e"
    if kind is int:
        if 0 <= value <= 9:
            return b"%d" % value
        if -2**31 <= value < 2**31:
            return b"i%d;" % value
        return None
    if value is None:
        return b"n"
    if value is True:
        return b"t"
    if value is False:
        return b"f"
    return None


def encode_call(name: str, args: list) -> bytes | None:
    """``C s<n>"name" [a<n>{args}] z`` for scalar arguments, else None."""
    if not name.isascii():
        return None
    parts = []
    for arg in args:
        encoded = encode_scalar(arg)
        if encoded is None:
            return None
        parts.append(encoded)
    head = b'Cs%d"%s"' % (len(name), name.encode())
    if not args:
        return head + b"z"
    return head + b"a%d{%s}z" % (len(args), b"".join(parts))


def decode_string_reply(data: bytes) -> str | None:
    """The result of ``R s<n>"ascii" z``, else None."""
    if data[:2] != b"Rs" or data[-2:] != b'"z':
        return None
    quote = data.index(b'"', 2)
    body = data[quote + 1:-2]
    if len(body) != int(data[2:quote]) or not body.isascii():
        return None
    return body.decode()


def dispatch(data: bytes, functions: dict[str, Callable[..., Any]]) -> bytes | None:
    """Parse ``C s<n>"name" a<n>{u<c> | s<n>"..."} z``, call, encode the reply; else None."""
    if data[:2] != b"Cs":
        return None
    quote = data.index(b'"', 2)
    length = int(data[2:quote])
    name = data[quote + 1:quote + 1 + length].decode()
    pos = quote + 2 + length
    args: list[Any] = []
    if data[pos:pos + 1] == b"a":
        brace = data.index(b"{", pos)
        count = int(data[pos + 1:brace])
        pos = brace + 1
        for _ in range(count):
            tag = data[pos:pos + 1]
            if tag == b"u":
                args.append(data[pos + 1:pos + 2].decode())
                pos += 2
            elif tag == b"s":
                quote = data.index(b'"', pos)
                length = int(data[pos + 1:quote])
                args.append(data[quote + 1:quote + 1 + length].decode())
                pos = quote + 2 + length
            else:
                return None
        if data[pos:] != b"}z":
            return None
    elif data[pos:] != b"z":
        return None
    function = functions.get(name.lower())
    if function is None:
        return None
    encoded = encode_scalar(function(*args))
    return None if encoded is None else b"R" + encoded + b"z"


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """An HTTP request or response head (up to, not including, the blank line): the first
    line split in two at its first space, and the headers by lower-case name."""
    lines = head.split(b"\r\n")
    first, _, rest = lines[0].partition(b" ")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return first, rest, headers

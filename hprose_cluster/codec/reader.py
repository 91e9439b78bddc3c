"""Reading hprose values without recursion (``HproseReader.unserialize``, ``readRaw``), and
the fast path for a reply holding one small scalar."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from hprose.common import HproseException
from hprose.io import HproseReader, _readuntil

from .base import DIGITS, MAX_DEPTH, read_count, read_string, read_token, too_deep

MISS = object()
"""What ``scalar_result`` returns for a reply that is not a lone scalar result."""

_REPLY_CONSTANTS = {b"Rnz": None, b"Rtz": True, b"Rfz": False, b"Rez": ""}


def scalar_result(data: bytes) -> Any:
    """The result of a reply that is exactly ``R`` + one small scalar + ``z`` (a digit, an
    ``i``/``l`` integer, an ASCII ``s`` string or ``u`` character, ``n``/``t``/``f``/``e``),
    read straight from the bytes; ``MISS`` for any other reply (the general reader's job)."""
    size = len(data)
    if size < 3 or data[0] != 0x52 or data[-1] != 0x7A:  # R ... z
        return MISS
    tag = data[1]
    try:
        if tag == 0x73:  # s<length>"<ascii>"
            quote = data.index(b'"', 2)
            if data[-2] != 0x22 or int(data[2:quote]) != size - quote - 3:
                return MISS
            raw = data[quote + 1:-2]
            return raw.decode("ascii") if raw.isascii() else MISS
        if size == 3:
            if 0x30 <= tag <= 0x39:
                return tag - 0x30
            return _REPLY_CONSTANTS.get(data, MISS)
        if (tag == 0x69 or tag == 0x6C) and data[-2] == 0x3B:  # i/l<digits>;
            return int(data[2:-2])
        if tag == 0x75 and size == 4 and data[2] < 0x80:
            return chr(data[2])
    except ValueError:
        pass
    return MISS


# container frames on the reading stack: [kind, container, remaining, extra]
_LIST, _MAP, _OBJECT = 0, 1, 2


def read_value(reader: HproseReader) -> Any:
    """``reader.unserialize()``: the values of hprose 1.4.3 (plus compat), without recursion."""
    stream = reader.stream
    read = stream.read
    refer = reader.refer
    stack: list[list[Any]] = []
    object_only = False  # after a class definition only an object (or null, ref) may follow
    while True:
        tag = read(1)
        if object_only and tag not in b"nroc":
            reader.unexpectedTag(tag)
        object_only = False
        if tag in DIGITS:
            v: Any = DIGITS[tag]
        elif tag == b"s":
            v = read_string(stream)
            refer.set(v)
        elif tag == b"i" or tag == b"l":
            v = int(read_token(read, b";"), 10)
        elif tag == b"a":
            v = []
            refer.set(v)
            count = read_count(read, b"{")
            if count:
                stack.append([_LIST, v, count, None])
                if len(stack) > MAX_DEPTH:
                    raise too_deep("read")
                continue
            read(1)
        elif tag == b"m":
            v = {}
            refer.set(v)
            count = read_count(read, b"{")
            if count:
                stack.append([_MAP, v, count * 2, None])
                if len(stack) > MAX_DEPTH:
                    raise too_deep("read")
                continue
            read(1)
        elif tag == b"u":
            v = reader._HproseReader__readUTF8CharWithoutTag()  # type: ignore[attr-defined]
        elif tag == b"n":
            v = None
        elif tag == b"e":
            v = ""
        elif tag == b"t":
            v = True
        elif tag == b"f":
            v = False
        elif tag == b"r":
            v = reader._HproseReader__readRef()  # type: ignore[attr-defined]
        elif tag == b"o":
            cls, count, fields = reader.classref[read_count(read, b"{")]
            v = cls()
            refer.set(v)
            if count:
                stack.append([_OBJECT, v, count, fields])
                if len(stack) > MAX_DEPTH:
                    raise too_deep("read")
                continue
            read(1)
        elif tag == b"c":
            reader._HproseReader__readClass()  # type: ignore[attr-defined]
            object_only = True
            continue
        elif tag == b"d" or tag == b"N" or tag == b"I" or tag == b"D" or tag == b"T" \
                or tag == b"b" or tag == b"g":
            v = _read_scalar(reader, tag)
        elif tag == b"E":
            raise HproseException(reader.readString())
        else:
            reader.unexpectedTag(tag)
        while stack:  # hand the value to the innermost open container
            frame = stack[-1]
            kind = frame[0]
            if kind == _LIST:
                frame[1].append(v)
            elif kind == _MAP:
                if frame[2] & 1:
                    frame[1][frame[3]] = v
                else:
                    frame[3] = v
            else:
                fields = frame[3]
                setattr(frame[1], fields[len(fields) - frame[2]], v)
            frame[2] -= 1
            if frame[2]:
                break
            read(1)  # the closing brace
            stack.pop()
            v = frame[1]
        else:
            return v


def _read_scalar(reader: HproseReader, tag: bytes) -> Any:
    """The less common scalars, through hprose's own methods."""
    if tag == b"d":
        return reader._HproseReader__readDoubleWithoutTag()  # type: ignore[attr-defined]
    if tag == b"N":
        return float("nan")
    if tag == b"I":
        return reader._HproseReader__readInfinityWithoutTag()  # type: ignore[attr-defined]
    if tag == b"D":
        return reader.readDateWithoutTag()
    if tag == b"T":
        return reader.readTimeWithoutTag()
    if tag == b"b":
        return reader.readBytesWithoutTag()
    return reader.readGuidWithoutTag()


_RAW_SCALARS = frozenset([b"%d" % i for i in range(10)] + [b"n", b"e", b"t", b"f", b"N"])


def _copy_date_time(stream: Any, write: Any) -> None:
    """A date or time up to its ``;`` or ``Z``.  (hprose 1.4.3's ``__readDateTimeRaw`` loops
    forever at the end of the stream, appending empty bytes until memory runs out.)"""
    while True:
        c = stream.read(1)
        if not c:
            raise HproseException("No byte found in stream")
        write(c)
        if c == b";" or c == b"Z":
            return


def read_raw(reader: Any, ostream: Any = None, tag: bytes | None = None) -> Any:
    """``HproseRawReader.readRaw(ostream, tag)``: copy one serialized value, without recursion
    (and a date or time cut short is an error, not an endless loop)."""
    if ostream is None:
        ostream = BytesIO()
    stream = reader.stream
    write = ostream.write
    closers: list[bool] = []  # one per open brace: True when it is a class definition's
    follows = False  # a value must come next (after a class definition or an ``E``), not a }
    while True:
        if tag is None:
            tag = stream.read(1)
        write(tag)
        done = True
        if follows and tag == b"}":
            reader.unexpectedTag(tag)  # 1.4.3 reads that value with readRaw: '}' is no value
        follows = False
        if tag in _RAW_SCALARS:
            pass
        elif tag == b"s":
            reader._HproseRawReader__readStringRaw(ostream)
        elif tag in (b"i", b"l", b"d", b"r"):
            reader._HproseRawReader__readNumberRaw(ostream)
        elif tag == b"u":
            reader._HproseRawReader__readUTF8CharRaw(ostream)
        elif tag in (b"a", b"m", b"o", b"c"):
            write(_readuntil(stream, b"{") + b"{")
            closers.append(tag == b"c")
            if len(closers) > MAX_DEPTH:
                raise too_deep("read")
            done = False
        elif tag == b"}" and closers:
            follows = closers.pop()  # a class definition is followed by its object
            done = not follows
        elif tag == b"I":
            write(stream.read(1))
        elif tag in (b"D", b"T"):
            _copy_date_time(stream, write)
        elif tag == b"b":
            reader._HproseRawReader__readBytesRaw(ostream)
        elif tag == b"g":
            reader._HproseRawReader__readGuidRaw(ostream)
        elif tag == b"E":
            follows = True  # the error's message follows
            done = False
        else:
            reader.unexpectedTag(tag)
        tag = None
        if done and not closers:
            return ostream

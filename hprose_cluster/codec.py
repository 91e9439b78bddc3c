"""hprose serialization without recursion: any nesting up to ``MAX_DEPTH``, then a clear error.

hprose 1.4.3 writes and reads a value by recursion, two or three Python frames per level of
nesting, so the deepest list it writes is about 330 levels and the deepest it reads about 490;
past that it fails with a ``RecursionError`` from deep inside ``hprose.io``.  Node peers send
values 200-1,000 levels deep.  The functions here walk a value with an explicit stack instead,
so depth costs memory (a few dozen bytes a level), never Python stack, and a value nested deeper
than ``MAX_DEPTH`` fails with an ``HproseException`` that says so (a peer cannot make a server
allocate a stack of millions of levels either).

They produce and accept exactly the bytes of hprose 1.4.3 with the fixes of
``hprose_cluster.compat`` (UTF-16 string lengths); ``compat.apply()`` installs them as
``HproseWriter.serialize``, ``HproseReader.unserialize`` and ``HproseRawReader.readRaw``.  They
go through the writer's and reader's own reference tables (``refer``) and class tables, so
references, class definitions and simple mode work as before.  The one difference: values that
only exist while they are being written (the tuples of a ``dict.items()`` view) are kept alive
until the whole value is written, so a later tuple can never reuse a freed one's ``id`` and be
written as a reference to it, which 1.4.3 does now and then.

``dumps(value, simple)`` is the fast path for a whole value (results and arguments): common
scalars are formatted directly, anything else goes through a writer.
"""

from __future__ import annotations

import codecs
import datetime
import math
from io import BytesIO
from itertools import chain
from typing import Any, Iterator
from uuid import UUID

from hprose.common import HproseException
from hprose.io import HproseClassManager, HproseReader, HproseWriter, _readuntil

__all__ = ["MAX_DEPTH", "utf16_length", "write_string", "read_string", "write_value",
           "read_value", "read_raw", "dumps", "string_bytes", "scalar_result", "MISS"]

MAX_DEPTH = 4096
"""Deepest nesting of lists, maps and objects written or read (node sends up to ~1,000)."""

_dict_views: tuple[type, ...] = (type({}.items()), type({}.keys()), type({}.values()))
_dict_items = _dict_views[0]
_END = object()
_SMALL = [b"%d" % i for i in range(10)]
_DIGITS = {digit: i for i, digit in enumerate(_SMALL)}


def _too_deep(what: str) -> HproseException:
    return HproseException("cannot %s a value nested deeper than %d levels (lists, maps and "
                           "objects inside one another)" % (what, MAX_DEPTH))


def _token(read: Any, end: bytes) -> bytes:
    """The bytes before ``end`` (which is consumed) or the end of the stream: hprose's
    ``_readuntil``, without a list and a join per number."""
    token = bytearray()
    while True:
        c = read(1)
        if c == end or not c:
            return bytes(token)
        token += c


def _count(read: Any, end: bytes) -> int:
    """hprose's ``_readint``: a decimal number before ``end``, 0 when there is none."""
    c = read(1)
    if c == end or not c:
        return 0
    d = read(1)
    if d == end or not d:
        return _DIGITS[c] if c in _DIGITS else int(c, 10)
    token = _token(read, end)
    return int(c + d + token, 10)


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
    length = _count(stream.read, b'"')
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


# --- writing ------------------------------------------------------------------------------


def _int_bytes(i: int) -> bytes:
    if 0 <= i <= 9:
        return _SMALL[i]
    if -2147483648 <= i <= 2147483647:
        return b"i%d;" % i
    return b"l%d;" % i


def _float_bytes(d: float) -> bytes:
    if d != d:
        return b"N"
    if math.isinf(d):
        return b"I+" if d > 0 else b"I-"
    return b"d%s;" % repr(d).encode("ascii")


def write_value(writer: HproseWriter, v: Any) -> None:
    """``writer.serialize(v)``: the bytes of hprose 1.4.3 (plus compat), without recursion."""
    write = writer.stream.write
    refer = writer.refer
    stack: list[Iterator[Any]] = []
    alive: list[Any] = []  # containers written by reference id stay alive until the end
    while True:
        t = type(v)
        if t is str:
            if not v:
                write(b"e")
            elif len(v) == 1 and v <= "\uffff":
                write(b"u" + v.encode("utf-8"))
            elif not refer.write(v):
                write_string(writer, v)
        elif t is int:
            write(_int_bytes(v))
        elif v is None:
            write(b"n")
        elif t is list or t is tuple:
            if not refer.write(v):
                refer.set(v)
                alive.append(v)
                if v:
                    write(b"a%d{" % len(v))
                    stack.append(iter(v))
                else:
                    write(b"a{}")
        elif t is dict:
            if not refer.write(v):
                refer.set(v)
                alive.append(v)
                if v:
                    write(b"m%d{" % len(v))
                    stack.append(chain.from_iterable(v.items()))
                else:
                    write(b"m{}")
        elif t is float:
            write(_float_bytes(v))
        elif t is bool:
            write(b"t" if v else b"f")
        else:
            _write_other(writer, v, stack, alive)
        if len(stack) > MAX_DEPTH:
            raise _too_deep("write")
        while stack:  # the next value: the next item of the innermost open container
            v = next(stack[-1], _END)
            if v is not _END:
                break
            stack.pop()
            write(b"}")
        else:
            return


def _write_other(writer: HproseWriter, v: Any, stack: list[Iterator[Any]],
                 alive: list[Any]) -> None:
    """Everything but the exact common types, in the order of ``HproseWriter.serialize``."""
    write = writer.stream.write
    refer = writer.refer
    if v == None:  # noqa: E711 - hprose compares with ==
        writer.writeNull()
    elif isinstance(v, bool):
        writer.writeBoolean(v)
    elif isinstance(v, int):
        writer.writeInteger(v)
    elif isinstance(v, float):
        writer.writeDouble(v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        writer.writeBytesWithRef(v)
    elif isinstance(v, str):
        if v == "":
            writer.writeEmpty()
        elif len(v) == 1 and v <= "\uffff":
            writer.writeUTF8Char(v)
        elif not refer.write(v):
            write_string(writer, v)
    elif isinstance(v, UUID):
        writer.writeGuidWithRef(v)
    elif isinstance(v, (list, tuple, *_dict_views)):
        if not refer.write(v):
            refer.set(v)
            items: Any = v
            if isinstance(v, _dict_items):  # fresh tuples: keep them (see the module doc)
                items = list(items)
            alive.append(items)
            write(b"a%d{" % len(items) if len(items) else b"a{")
            stack.append(iter(items))
    elif isinstance(v, dict):
        if not refer.write(v):
            refer.set(v)
            alive.append(v)
            write(b"m%d{" % len(v) if len(v) else b"m{")
            stack.append(_map_items(v))
    elif isinstance(v, (datetime.datetime, datetime.date)):
        writer.writeDateWithRef(v)
    elif isinstance(v, datetime.time):
        writer.writeTimeWithRef(v)
    elif not refer.write(v):
        _open_object(writer, v, stack)
        alive.append(v)


def _map_items(m: dict) -> Iterator[Any]:
    for key in m:
        yield key
        yield m[key]


def _open_object(writer: HproseWriter, obj: Any, stack: list[Iterator[Any]]) -> None:
    """``HproseWriter.writeObject`` up to its fields, which go on the stack."""
    classname = HproseClassManager.getClassAlias(obj.__class__)
    if classname in writer.classref:
        index = writer.classref[classname]
        fields = writer.fieldsref[index]
    else:
        fields = tuple(vars(obj).keys())
        index = writer._HproseWriter__writeClass(classname, fields)  # type: ignore[attr-defined]
    writer.stream.write(b"o%d{" % index)
    writer.refer.set(obj)
    data = vars(obj)
    stack.append(data[field] for field in fields)


def dumps(v: Any, simple: bool = False) -> bytes:
    """The serialized bytes of ``v`` as a fresh ``HproseWriter(stream, simple)`` writes them."""
    t = type(v)
    if t is str:
        if len(v) > 1:
            return string_bytes(v)
        if not v:
            return b"e"
        if v <= "\uffff":
            return b"u" + v.encode("utf-8")
    elif t is int:
        return _int_bytes(v)
    elif v is None:
        return b"n"
    elif t is bool:
        return b"t" if v else b"f"
    elif t is float:
        return _float_bytes(v)
    stream = BytesIO()
    write_value(HproseWriter(stream, simple), v)
    return stream.getvalue()


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


# --- reading ------------------------------------------------------------------------------

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
        if tag in _DIGITS:
            v: Any = _DIGITS[tag]
        elif tag == b"s":
            v = read_string(stream)
            refer.set(v)
        elif tag == b"i" or tag == b"l":
            v = int(_token(read, b";"), 10)
        elif tag == b"a":
            v = []
            refer.set(v)
            count = _count(read, b"{")
            if count:
                stack.append([_LIST, v, count, None])
                if len(stack) > MAX_DEPTH:
                    raise _too_deep("read")
                continue
            read(1)
        elif tag == b"m":
            v = {}
            refer.set(v)
            count = _count(read, b"{")
            if count:
                stack.append([_MAP, v, count * 2, None])
                if len(stack) > MAX_DEPTH:
                    raise _too_deep("read")
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
            cls, count, fields = reader.classref[_count(read, b"{")]
            v = cls()
            refer.set(v)
            if count:
                stack.append([_OBJECT, v, count, fields])
                if len(stack) > MAX_DEPTH:
                    raise _too_deep("read")
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


def read_raw(reader: Any, ostream: Any = None, tag: bytes | None = None) -> Any:
    """``HproseRawReader.readRaw(ostream, tag)``: copy one serialized value, without recursion."""
    if ostream is None:
        ostream = BytesIO()
    stream = reader.stream
    write = ostream.write
    closers: list[bool] = []  # one per open brace: True when it is a class definition's
    while True:
        if tag is None:
            tag = stream.read(1)
        write(tag)
        done = True
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
                raise _too_deep("read")
            done = False
        elif tag == b"}" and closers:
            done = not closers.pop()  # a class definition is followed by its object
        elif tag == b"I":
            write(stream.read(1))
        elif tag in (b"D", b"T"):
            reader._HproseRawReader__readDateTimeRaw(ostream)
        elif tag == b"b":
            reader._HproseRawReader__readBytesRaw(ostream)
        elif tag == b"g":
            reader._HproseRawReader__readGuidRaw(ostream)
        elif tag == b"E":
            done = False  # the error's message follows
        else:
            reader.unexpectedTag(tag)
        tag = None
        if done and not closers:
            return ostream

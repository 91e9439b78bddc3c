"""Writing hprose values without recursion (``HproseWriter.serialize``), and ``dumps``."""

from __future__ import annotations

import datetime
import math
from io import BytesIO
from itertools import chain
from typing import Any, Iterator
from uuid import UUID

from hprose.io import HproseClassManager, HproseWriter

from .base import MAX_DEPTH, SMALL, string_bytes, too_deep, write_string

_dict_views: tuple[type, ...] = (type({}.items()), type({}.keys()), type({}.values()))
_dict_items = _dict_views[0]
_END = object()


def _int_bytes(i: int) -> bytes:
    if 0 <= i <= 9:
        return SMALL[i]
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
            raise too_deep("write")
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

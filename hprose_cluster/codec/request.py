"""Encoding one hprose call (``C`` + name + arguments + ``z``), with a fast path for the
common small call.

A client sends the same few method names with a handful of strings and numbers over and over.
Writing them through an ``HproseWriter`` (a writer, a reference table and a ``BytesIO`` per
call) costs several microseconds; here the ``C``-tagged name is kept per name and arguments
of the exact types ``str``, ``int``, ``float``, ``bool`` and ``None`` are formatted directly.
Anything else (containers, objects, bytes, dates, subclasses, a string object passed twice,
which the writer sends as a reference) goes through ``dumps`` as before: the bytes are always
those of a fresh ``HproseWriter`` (``tests/test_codec.py`` checks both paths against it).
"""

from __future__ import annotations

from typing import Any, Sequence

from .base import SMALL, string_bytes, utf16_length
from .writer import _float_bytes, dumps

__all__ = ["encode_call"]

_heads: dict[str, bytes] = {}
_MAX_HEADS = 1024  # distinct method names kept (a client calls a few; a cap, not a cache policy)
_OPEN = [b"a%d{" % n for n in range(16)]


def _head(name: str) -> bytes:
    head = b"C" + string_bytes(name)
    if len(_heads) >= _MAX_HEADS:
        _heads.clear()
    _heads[name] = head
    return head


def encode_call(name: str, args: Sequence[Any], byref: bool = False,
                simple: bool = False) -> bytes:
    """The request bytes of ``name(*args)``, exactly as hprose's own client writes them
    (references count from the argument list; ``byref`` adds ``t``)."""
    head = _heads.get(name) or _head(name)
    count = len(args)
    if count == 1 and not byref and type(args[0]) is str:  # the commonest call of all
        v = args[0]
        size = len(v)
        if size > 1:
            data = v.encode("utf-8")
            if len(data) == size:
                return b'%sa1{s%d"%s"}z' % (head, size, data)
        elif size and v < "\x80":
            return b"%sa1{u%s}z" % (head, v.encode("ascii"))
    if not count:
        return head + b"a{}tz" if byref else head + b"z"
    out = [head, _OPEN[count] if count < 16 else b"a%d{" % count]
    append = out.append
    seen: set[int] | None = None  # ids of the strings written (a second one is a reference)
    for v in args:
        t = type(v)
        if t is str:
            size = len(v)
            if size > 1:
                if not simple and count > 1:
                    if seen is None:
                        seen = {id(v)}
                    elif id(v) in seen:
                        break
                    else:
                        seen.add(id(v))
                data = v.encode("utf-8")
                append(b's%d"%s"' % (size if len(data) == size else utf16_length(v), data))
            elif not size:
                append(b"e")
            elif v <= "\uffff":
                append(b"u" + v.encode("utf-8"))
            else:
                break  # one astral character: a string with a reference slot
        elif t is int:
            append(SMALL[v] if 0 <= v <= 9 else
                   b"i%d;" % v if -2147483648 <= v <= 2147483647 else b"l%d;" % v)
        elif v is None:
            append(b"n")
        elif t is bool:
            append(b"t" if v else b"f")
        elif t is float:
            append(_float_bytes(v))
        else:
            break
    else:
        append(b"}tz" if byref else b"}z")
        return b"".join(out)
    return b"".join((head, dumps(list(args), simple), b"tz" if byref else b"z"))

"""Reading the calls of an hprose request (after its ``C`` tag): ``fast_call`` straight from the
bytes for the common shape, ``read_call`` with hprose 1.4.3's reader for anything.  Used by
the dispatch (``service.py``); each gives ``(name, args, byref, tag after the call, position
after that tag)``.
"""

from __future__ import annotations

from io import BytesIO

from hprose.io import HproseReader, _readint

from . import codec

__all__ = ["fast_call", "read_call"]


_Parsed = tuple  # (name, args, byref, tag after the call, position after that tag)


def fast_call(data: bytes, pos: int) -> _Parsed | None:
    """One call read straight from the bytes when it is the common shape: an ASCII ``s``
    name and arguments that are all small scalars (digits, ``i``/``l`` integers, ASCII
    strings, ``n``/``e``/``t``/``f``).  None otherwise: the general reader takes over."""
    try:
        if data[pos] != 0x73:  # s
            return None
        quote = data.index(b'"', pos + 1)
        end = quote + 1 + int(data[pos + 1:quote])
        raw = data[quote + 1:end]
        if not raw.isascii() or len(raw) != end - quote - 1 or data[end] != 0x22:
            return None
        name = raw.decode("ascii")
        pos = end + 1
        tag = data[pos]
        args: list = []
        byref = False
        if tag == 0x61:  # a
            brace = data.index(b"{", pos + 1)
            count = int(data[pos + 1:brace]) if brace > pos + 1 else 0
            pos = brace + 1
            for _ in range(count):
                t = data[pos]
                if 0x30 <= t <= 0x39:
                    args.append(t - 0x30)
                    pos += 1
                elif t == 0x73:  # s
                    quote = data.index(b'"', pos + 1)
                    end = quote + 1 + int(data[pos + 1:quote])
                    raw = data[quote + 1:end]
                    if not raw.isascii() or len(raw) != end - quote - 1 or data[end] != 0x22:
                        return None
                    args.append(raw.decode("ascii"))
                    pos = end + 1
                elif t == 0x69 or t == 0x6C:  # i, l
                    semicolon = data.index(b";", pos + 1)
                    args.append(int(data[pos + 1:semicolon]))
                    pos = semicolon + 1
                elif t in _FAST_CONSTANTS:
                    args.append(_FAST_CONSTANTS[t])
                    pos += 1
                elif t == 0x75 and data[pos + 1] < 0x80:  # u, one ASCII character
                    args.append(chr(data[pos + 1]))
                    pos += 2
                else:
                    return None
            if data[pos] != 0x7D:  # }
                return None
            pos += 1
            tag = data[pos]
            if tag == 0x74:  # t
                byref = True
                pos += 1
                tag = data[pos]
        if tag != 0x7A and tag != 0x43:  # z, C
            return None
        return name, args, byref, b"z" if tag == 0x7A else b"C", pos + 1
    except (ValueError, IndexError):
        return None


_FAST_CONSTANTS = {0x6E: None, 0x65: "", 0x74: True, 0x66: False}


def read_call(stream: BytesIO, reader: HproseReader) -> _Parsed:
    """The general reader of one call (after its ``C``), with 1.4.3's reader and errors."""
    read = stream.read
    tag = read(1)
    if tag == b"s":
        name = codec.read_string(stream)
    else:  # u, e, n or a reference: hprose's simple reader, as 1.4.3 reads names
        stream.seek(-1, 1)
        name = HproseReader(stream, True).readString()
        name.lower()  # where 1.4.3 fails on a null name (n), before reading any argument
    tag = read(1)
    args: list = []
    byref = False
    if tag == b"a":
        reader.refer.set(args)
        for _ in range(_readint(stream, b"{")):
            args.append(codec.read_value(reader))
        read(1)
        tag = read(1)
        if tag == b"t":
            byref = True
            tag = read(1)
            if tag != b"z" and tag != b"C":
                reader.unexpectedTag(tag, b"zC")
        elif tag != b"z" and tag != b"C":
            reader.unexpectedTag(tag, b"tzC")
    elif tag != b"z" and tag != b"C":
        reader.unexpectedTag(tag, b"azC")
    return name, args, byref, tag, stream.tell()

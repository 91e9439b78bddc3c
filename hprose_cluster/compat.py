"""Fixes for the defects of PyPI hprose 1.4.3 that break talking to other hprose peers.

``apply()`` patches hprose in place (with ``wrapt``, so the patched attributes stay the same
functions to introspection) and is idempotent: the second and later calls change nothing.
It is called on import by ``hprose_cluster.transport.base`` and by the transports, so any
process that uses hprose-cluster writes correct bytes, including ``hprose.HttpClient`` and
``hprose.HttpServer`` used directly in the same process.

Exactly what changes (everything else in hprose keeps its 1.4.3 behaviour):

1. **String lengths count UTF-16 code units** (the hprose spec; Go and hprose's own reader
   do this), not code points.  1.4.3 writes ``"a😀b"`` as ``s3"a😀b"``, which Go rejects.

   * ``HproseWriter.writeString`` writes ``s<utf16 length>"..."``: ``"a😀b"`` -> ``s4"a😀b"``.
     The empty string is still written ``s""`` as 1.4.3 does.  A ``bytes`` argument, which
     1.4.3 formatted as ``b'...'`` (the cause of defect 2 below), is decoded as UTF-8 first.
   * ``HproseWriter.serialize`` and ``HproseWriter.writeUTF8Char``: a one-character string
     outside the BMP (two UTF-16 units) is written as a string with its reference, ``s2"😀"``,
     never ``u😀`` (``u`` holds exactly one UTF-16 unit; readers choke on 4 UTF-8 bytes).
     One-character BMP strings are still written ``u<char>``.
   * The class-name length written by ``HproseWriter`` for ``c<len>"Name"`` (the private
     ``__writeClass``) counts UTF-16 units.  Field names, map keys, list items, object values
     and method names all go through ``serialize``/``writeString`` and so are covered above.

   ``HproseReader`` already counts a 4-byte UTF-8 sequence as two units (see 4 for speed).

2. **Error replies**: ``HproseService._doError`` writes the message as text, so
   ``raise Exception("boom")`` is answered ``Es4"boom"z`` (1.4.3 sends ``Es4"b'boom'"z``).
   It still fires ``onSendError`` first, still sends the traceback when ``debug`` is on, and
   still runs the output filters.  This fixes every ``HproseService`` subclass, including
   hprose's ``HttpServer`` and our ``TcpServer``.

3. The ``callback=`` mode defect is fixed in ``BaseClient`` (our clients), not here; hprose's
   own ``HproseClient`` is left as it is.

4. **Reading strings in one pass.**  ``HproseReader``'s private ``__readString`` reads a string
   one byte at a time, about a microsecond a byte: a 1 MB argument took a second to decode.
   It now reads as many bytes as there are UTF-16 units left (never past the string's end,
   since every unit takes at least one byte), decodes them incrementally, and reads single
   bytes only to finish a character cut in two.  Same result, same count (a 4-byte sequence
   is two units), the same ``UnicodeDecodeError`` for bytes that are not UTF-8, and an
   ``HproseException`` instead of a ``TypeError`` when the stream ends inside the string.
"""

from __future__ import annotations

import codecs
import threading
import traceback
from io import BytesIO
from sys import exc_info
from typing import Any

import wrapt
from hprose.common import HproseException
from hprose.io import HproseReader, HproseTags, HproseWriter, _readint
from hprose.server import HproseService

__all__ = ["apply", "utf16_length"]

_MARK = "_self_hprose_cluster_compat"
_lock = threading.Lock()


def utf16_length(s: str) -> int:
    """Length of ``s`` in UTF-16 code units: what every hprose peer puts before a string."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) >> 1


def _is_astral_char(v: Any) -> bool:
    return type(v) is str and len(v) == 1 and ord(v) > 0xFFFF


# --- wrappers (signature: wrapped, instance, args, kwargs) --------------------------------


def _write_string(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.writeString(s)`` with a UTF-16 length; bytes are decoded as UTF-8."""
    s = args[0] if args else kwargs["s"]
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s).decode("utf-8")
    instance.refer.set(s)
    stream = instance.stream
    if not s:
        stream.write(b's""')
        return
    stream.write(b"s%d\"" % utf16_length(s))
    stream.write(s.encode("utf-8"))
    stream.write(HproseTags.TagQuote)


def _serialize(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.serialize(v)``: a lone non-BMP character goes out as ``s2"..."``."""
    v = args[0] if args else kwargs["v"]
    if _is_astral_char(v):
        instance.writeStringWithRef(v)
        return
    wrapped(*args, **kwargs)


def _write_utf8_char(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.writeUTF8Char(u)``: ``u`` only for one UTF-16 unit, else a string."""
    u = args[0] if args else kwargs["u"]
    if _is_astral_char(u):
        instance.writeString(u)
        return
    wrapped(*args, **kwargs)


def _write_class(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> int:
    """``HproseWriter.__writeClass(classname, fields)`` with a UTF-16 class-name length.

    Same bytes as 1.4.3 otherwise: ``c<len>"<name>"<count>{<field strings>}``.
    """
    classname, fields = args
    stream = instance.stream
    count = len(fields)
    stream.write(HproseTags.TagClass)
    stream.write(str(utf16_length(classname)).encode("ascii"))
    stream.write(HproseTags.TagQuote)
    stream.write(classname.encode("utf-8"))
    stream.write(HproseTags.TagQuote)
    if count > 0:
        stream.write(str(count).encode("ascii"))
    stream.write(HproseTags.TagOpenbrace)
    for field in fields:
        instance.writeString(field)
    stream.write(HproseTags.TagClosebrace)
    index = len(instance.fieldsref)
    instance.fieldsref.append(fields)
    instance.classref[classname] = index
    return index


def _do_error(wrapped: Any, instance: HproseService, args: tuple, kwargs: dict) -> bytes:
    """``HproseService._doError(e, context)`` writing the message as text, not ``b'...'``."""
    e, context = args if len(args) == 2 else (kwargs["e"], kwargs["context"])
    instance._fireErrorEvent(e, context)
    if instance.debug:
        message = "".join(traceback.format_exception(*exc_info()))
    else:
        message = str(e)
    ostream = BytesIO()
    writer = HproseWriter(ostream, True)
    ostream.write(HproseTags.TagError)
    writer.writeString(message)
    ostream.write(HproseTags.TagEnd)
    return instance._responseEnd(ostream, context)


def _read_string(wrapped: Any, instance: HproseReader, args: tuple, kwargs: dict) -> str:
    """``HproseReader.__readString()``: ``<utf16 length>"<utf-8 bytes>"`` after the tag."""
    stream = instance.stream
    length = _readint(stream, HproseTags.TagQuote)
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


_PATCHES: tuple[tuple[type, str, Any], ...] = (
    (HproseWriter, "writeString", _write_string),
    (HproseWriter, "serialize", _serialize),
    (HproseWriter, "writeUTF8Char", _write_utf8_char),
    (HproseWriter, "_HproseWriter__writeClass", _write_class),
    (HproseService, "_doError", _do_error),
    (HproseReader, "_HproseReader__readString", _read_string),
)


def _is_patched(cls: type, name: str) -> bool:
    current = cls.__dict__.get(name)
    return isinstance(current, wrapt.FunctionWrapper) and getattr(current, _MARK, False)


def apply() -> None:
    """Patch hprose 1.4.3 once (thread-safe); calling it again does nothing."""
    with _lock:
        for cls, name, wrapper in _PATCHES:
            if _is_patched(cls, name):
                continue
            wrapt.wrap_function_wrapper(cls, name, wrapper)
            setattr(cls.__dict__[name], _MARK, True)


def is_applied() -> bool:
    """True when every patch is in place (for tests and diagnostics)."""
    return all(_is_patched(cls, name) for cls, name, _ in _PATCHES)

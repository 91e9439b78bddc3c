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

5. **Nesting without recursion.**  ``HproseWriter.serialize``, ``HproseReader.unserialize``
   and ``HproseRawReader.readRaw`` recurse two or three Python frames per level of nesting,
   so 1.4.3 writes at most ~330 levels and reads ~490, then dies with a ``RecursionError``
   (node peers send up to ~1,000).  They are replaced by ``hprose_cluster.codec``'s loops over
   an explicit stack: the same bytes and values, any depth up to ``codec.MAX_DEPTH`` (4,096),
   and past it an ``HproseException`` that names the limit.  The hprose methods they call
   (``writeList``, ``readList``, ``writeObject``...) are untouched and call back into them.
   ``readRaw`` also ends at the end of the stream inside a date or time (1.4.3 loops there
   forever, appending empty bytes until the process runs out of memory).
"""

from __future__ import annotations

import threading
import traceback
from io import BytesIO
from sys import exc_info
from typing import Any

import wrapt
from hprose.io import HproseRawReader, HproseReader, HproseTags, HproseWriter
from hprose.server import HproseService

from . import codec
from .codec import utf16_length

__all__ = ["apply", "utf16_length"]

_MARK = "_self_hprose_cluster_compat"
_lock = threading.Lock()


# --- wrappers (signature: wrapped, instance, args, kwargs) --------------------------------


def _write_string(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.writeString(s)`` with a UTF-16 length; bytes are decoded as UTF-8."""
    codec.write_string(instance, args[0] if args else kwargs["s"])


def _serialize(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.serialize(v)`` without recursion; a lone non-BMP character goes out as
    ``s2"..."``."""
    codec.write_value(instance, args[0] if args else kwargs["v"])


def _unserialize(wrapped: Any, instance: HproseReader, args: tuple, kwargs: dict) -> Any:
    """``HproseReader.unserialize()`` without recursion."""
    return codec.read_value(instance)


def _read_raw(wrapped: Any, instance: HproseRawReader, args: tuple, kwargs: dict) -> Any:
    """``HproseRawReader.readRaw(ostream=None, tag=None)`` without recursion."""
    return codec.read_raw(instance, *args, **kwargs)


def _write_utf8_char(wrapped: Any, instance: HproseWriter, args: tuple, kwargs: dict) -> None:
    """``HproseWriter.writeUTF8Char(u)``: ``u`` only for one UTF-16 unit, else a string."""
    u = args[0] if args else kwargs["u"]
    if type(u) is str and len(u) == 1 and ord(u) > 0xFFFF:
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


def error_message(e: BaseException, debug: bool) -> str:
    """What an ``E`` reply says: the traceback being handled in debug mode, else ``str(e)``."""
    if debug:
        return "".join(traceback.format_exception(*exc_info()))
    return str(e)


def _do_error(wrapped: Any, instance: HproseService, args: tuple, kwargs: dict) -> bytes:
    """``HproseService._doError(e, context)`` writing the message as text, not ``b'...'``."""
    e, context = args if len(args) == 2 else (kwargs["e"], kwargs["context"])
    instance._fireErrorEvent(e, context)
    ostream = BytesIO()
    ostream.write(b"E" + codec.string_bytes(error_message(e, instance.debug)) + b"z")
    return instance._responseEnd(ostream, context)


def _read_string(wrapped: Any, instance: HproseReader, args: tuple, kwargs: dict) -> str:
    """``HproseReader.__readString()``: ``<utf16 length>"<utf-8 bytes>"`` after the tag."""
    return codec.read_string(instance.stream)


_PATCHES: tuple[tuple[type, str, Any], ...] = (
    (HproseWriter, "writeString", _write_string),
    (HproseWriter, "serialize", _serialize),
    (HproseWriter, "writeUTF8Char", _write_utf8_char),
    (HproseWriter, "_HproseWriter__writeClass", _write_class),
    (HproseService, "_doError", _do_error),
    (HproseReader, "_HproseReader__readString", _read_string),
    (HproseReader, "unserialize", _unserialize),
    (HproseRawReader, "readRaw", _read_raw),
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

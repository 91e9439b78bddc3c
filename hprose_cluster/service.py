"""Our hprose dispatch: what a request means and what it is answered, under every server.

hprose 1.4.3's ``HproseService._doInvoke`` starts a new output buffer for every call of a
request, so a request holding several calls (a *batch*, what hprose for Node.js sends for
``client.batch.begin()/end()``) is answered with the last call's reply only, and the node client
resolves every other call of the batch wrongly, silently (WIRE.md, "Batches").  ``Service``
replaces ``_handle``/``_doInvoke``/``_doFunctionList`` and answers as the Go and node servers do:
one ``R`` (or ``E``) per call, in order, then one ``z``; an error in one call does not stop the
others; a by-reference call carries its own ``t`` and its reply its own ``A`` list.

Everything else of 1.4.3's service is kept: ``add*`` (``addFunction``, ``addMethods``,
``addInstanceMethods``, ``add``...), ``addMissingFunction`` (the ``*`` function, called
``f(name, args)``), per-function ``resultMode`` (Normal, Serialized, Raw, RawWithEndTag) and
``simple`` (None: the service's ``simple`` at call time), a ``context`` last parameter, filters
(input filters in reverse order, output filters in order, on the whole request and reply),
``onBeforeInvoke(name, args, byref, context)``, ``onAfterInvoke(name, args, byref, result,
context)`` and ``onSendError(e, context)`` (each given as many of those as it accepts),
``debug`` (the traceback in the ``E`` reply), the function list on ``z`` or HTTP GET, and the
error texts ("Can't find this function nosuch().", "Wrong Request: ...").  Errors go out as
text (``Es4"boom"z``, compat fix 2).

It is the hot path, so what can be decided once is decided when a function is added or an
event handler set, not per call: the lower-cased name, the function, its result mode, whether
it takes ``context``, the encoded function list, and each event handler's argument count.

Deliberate differences from 1.4.3 (each a defect there):

* Event handlers that are bound methods (or other callables) get as many arguments as they
  accept; 1.4.3 counted ``self`` and so called a bound method with one argument too many, or
  not at all.
* A method taking ``context`` gets it like a function does (1.4.3 counted ``self`` as an
  argument, so a method never got it).
* A function taking ``context`` is called with it, but the ``A`` list of a by-reference call is
  the arguments the client sent (1.4.3 appended the context to them and tried to serialize it).
* A ``RawWithEndTag`` function's reply is sent as it is when the request has one call (as in
  1.4.3); inside a batch its final ``z`` is dropped so that the batch gets one ``z``.
"""

from __future__ import annotations

import inspect
import sys
from io import BytesIO
from typing import Any, Callable, NamedTuple

from hprose.common import HproseException, HproseResultMode
from hprose.httpserver import HproseHttpService
from hprose.io import HproseReader
from hprose.server import HproseService

from . import codec, compat
from .calls import fast_call, read_call

__all__ = ["Service", "HttpService"]

compat.apply()

_NORMAL = HproseResultMode.Normal
_SERIALIZED = HproseResultMode.Serialized
_RAW = HproseResultMode.Raw
_RAW_WITH_END_TAG = HproseResultMode.RawWithEndTag


class _Entry(NamedTuple):
    """One published function, as the dispatch needs it."""

    function: Callable[..., Any]
    mode: int
    simple: bool | None
    context_at: int  # the argument count at which ``context`` is appended; -1: never
    missing: bool  # the ``*`` function: called as f(name, args)


def _context_position(function: Any) -> int:
    """hprose 1.4.3's rule (``_fixArgs``): a function whose code's last positional parameter
    is named ``context`` is given the context when the call brings one argument fewer.
    (1.4.3 counted a bound method's ``self`` among the arguments; it is not counted here.)"""
    code = getattr(function, "__code__", None)
    if code is None:
        return -1
    count = code.co_argcount
    if count > 0 and code.co_varnames[count - 1] == "context":
        bound = getattr(function, "__self__", None) is not None and \
            hasattr(function, "__func__")
        return count - 1 - (1 if bound else 0)
    return -1


def _arity(handler: Callable[..., Any], most: int) -> int:
    """How many of ``most`` leading arguments ``handler`` accepts (hprose's convention)."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return most
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return most
    count = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return min(count, most)


def _event(slot: str, most: int) -> property:
    """An event attribute (``onBeforeInvoke``...) that works out its handler's arity when set;
    the dispatch reads ``(handler, arity)`` from ``slot``."""

    def get(self: Any) -> Any:
        handler = getattr(self, slot, None)
        return None if handler is None else handler[0]

    def set_(self: Any, handler: Any) -> None:
        setattr(self, slot, None if handler is None else (handler, _arity(handler, most)))

    return property(get, set_, doc="hprose's event handler, given up to %d arguments" % most)


class Service(HproseService):
    """An ``hprose.HproseService`` that answers batches and does per call only what must be."""

    onBeforeInvoke = _event("_on_before", 4)
    onAfterInvoke = _event("_on_after", 5)
    onSendError = _event("_on_error", 2)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if any(getattr(cls, name) is not getattr(Service, name)
               for name in ("_doInvoke", "_answer")) and cls._direct is Service._direct:
            _DIRECT[cls] = False

    def __init__(self, *args: Any, **kwargs: Any):
        self._entries: dict[str, _Entry] = {}
        self._function_list = b"Fa{}z"
        self._on_before: tuple[Callable[..., Any], int] | None = None
        self._on_after: tuple[Callable[..., Any], int] | None = None
        self._on_error: tuple[Callable[..., Any], int] | None = None
        super().__init__(*args, **kwargs)

    # --- publishing (every add* of hprose ends in addFunction) ----------------------------

    def addFunction(self, function: Any, alias: str | None = None,  # noqa: N802
                    resultMode: int = _NORMAL, simple: bool | None = None) -> None:  # noqa: N803
        if isinstance(function, str):
            function = getattr(sys.modules["__main__"], function, None)
        super().addFunction(function, alias, resultMode, simple)  # hprose's checks and tables
        if alias is None:
            alias = function.__name__
        key = alias.lower()  # type: ignore[union-attr]
        normal = resultMode not in (_SERIALIZED, _RAW, _RAW_WITH_END_TAG)
        self._entries[key] = _Entry(function, _NORMAL if normal else resultMode, simple,
                                    _context_position(function), key == "*")
        names = list(self._HproseService__funcNames.values())  # type: ignore[attr-defined]
        self._function_list = b"F" + codec.dumps(names, True) + b"z"

    # --- events (hprose's hooks, kept for subclasses and compat's _doError) ---------------

    def _fireBeforeInvokeEvent(self, name: str, args: list, byref: bool,  # noqa: N802
                               context: Any) -> None:
        if self._on_before is not None:
            handler, arity = self._on_before
            handler(*(name, args, byref, context)[:arity])

    def _fireAfterInvokeEvent(self, name: str, args: list, byref: bool,  # noqa: N802
                              result: Any, context: Any) -> None:
        if self._on_after is not None:
            handler, arity = self._on_after
            handler(*(name, args, byref, result, context)[:arity])

    def _fireErrorEvent(self, e: BaseException, context: Any) -> None:  # noqa: N802
        if self._on_error is not None:
            handler, arity = self._on_error
            handler(*(e, context)[:arity])

    # --- the request ----------------------------------------------------------------------

    def _handle(self, data: bytes, context: Any) -> bytes:
        """The reply to one request: input filters, the calls or the function list, output
        filters; any failure outside a call is one ``E`` reply (through ``_doError``)."""
        filters = self._HproseService__filters  # type: ignore[attr-defined]
        if not filters and self._on_before is None and self._on_after is None \
                and _DIRECT.get(type(self), True):
            reply = self._direct(data, context)
            if reply is not None:
                return reply
        try:
            if filters:
                for _filter in reversed(filters):
                    data = _filter.inputFilter(data, context)
            if not data or data[-1:] != b"z":
                raise HproseException("Wrong Request: \r\n%s" % _text(data))
            tag = data[:1]
            if tag == b"C":
                reply = self._doInvoke(data, context)
            elif tag == b"z":
                reply = self._function_list
            else:
                raise HproseException("Wrong Request: \r\n%s" % _text(data))
            if filters:
                for _filter in filters:
                    reply = _filter.outputFilter(reply, context)
            return reply
        except Exception as e:
            return self._doError(e, context)

    def _direct(self, data: Any, context: Any) -> bytes | None:
        """The reply to the common request, decided in one pass over its bytes: one call of
        a published function (Normal result mode), its name ASCII and its arguments small
        scalars (``calls.fast_call``'s shapes), no filters and no before/after events (the
        caller checks those).  None for anything else, before anything is executed:
        ``_handle``'s general path then answers, with the same bytes it would have given.

        One function, the name and a lone argument read inline: on a small call the
        dispatch's cost is mostly how much code and memory it touches."""
        try:
            if data[0] != 0x43 or data[1] != 0x73 or data[-1] != 0x7A:  # Cs ... z
                return None
            quote = data.index(34, 2)  # "
            end = quote + 1 + int(data[2:quote])
            if data[end] != 0x22:
                return None
            name = data[quote + 1:end].decode("ascii")
            tag = data[end + 1]
            args: list | None = None
            if tag == 0x7A:  # z: no arguments
                if end + 2 != len(data):
                    return None
                args = []
            elif tag == 0x61 and data[end + 2:end + 4] == b"1{" and data[-2] == 0x7D:
                t = data[end + 4]  # a lone argument: a1{<it>}z
                if t == 0x75 and end + 8 == len(data) and data[end + 5] < 0x80:  # u
                    args = [chr(data[end + 5])]
                elif t == 0x73 and data[-3] == 0x22:  # s
                    quote = data.index(34, end + 5)
                    if quote + 1 + int(data[end + 5:quote]) != len(data) - 3:
                        return None
                    args = [data[quote + 1:-3].decode("ascii")]
        except (ValueError, IndexError, TypeError):
            return None
        byref = False
        if args is None:  # other arguments: calls.fast_call's shapes
            call = fast_call(data, 1)
            if call is None or call[3] != b"z" or call[4] != len(data):  # a batch, or more
                return None
            name, args, byref = call[0], call[1], call[2]
        entry = self._entries.get(name.lower())
        if entry is None or entry.missing or entry.mode != _NORMAL:
            return None
        try:
            if entry.context_at == len(args):
                result = entry.function(*args, context)
            else:
                result = entry.function(*args)
            if not byref and type(result) is str and len(result) > 1 and result.isascii():
                return b'Rs%d"%s"z' % (len(result), result.encode())  # = codec.string_bytes
            simple = entry.simple
            if simple is None:
                simple = self.simple
            if byref:
                return b"R" + codec.dumps(result, simple) + b"A" + codec.dumps(args, simple) \
                    + b"z"
            return b"R" + codec.dumps(result, simple) + b"z"
        except Exception as e:
            self._fireErrorEvent(e, context)
            return b"E" + codec.string_bytes(compat.error_message(e, self.debug)) + b"z"

    def _doInvoke(self, data: Any, context: Any) -> bytes:  # noqa: N802
        """Every call of a request, answered in order: the reply before the output filters.

        ``data`` is the request (bytes starting with ``C``), or, as in 1.4.3, a stream
        positioned just after its first ``C``.  A request that cannot be read fails whole
        (as in Go); a call that fails is an ``E`` part and the next call runs.
        """
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):  # a stream just after its C
            data = b"C" + data.read()
        parts: list[bytes] = []
        pos = 1
        stream: BytesIO | None = None
        reader: HproseReader | None = None
        while True:
            call = fast_call(data, pos)
            if call is None:
                if stream is None or reader is None:
                    stream = BytesIO(data)
                    reader = HproseReader(stream)
                else:
                    reader.reset()  # references and classes count from each call's arguments
                stream.seek(pos)
                call = read_call(stream, reader)
            name, args, byref, tag, pos = call
            part = self._answer(name, args, byref, context)
            if tag == b"z" and not parts:  # one call: the common case
                return bytes(part) if type(part) is _Whole else part + b"z"
            if type(part) is _Whole:
                part = part[:-1] if part.endswith(b"z") else bytes(part)
            parts.append(part)
            if tag == b"z":
                parts.append(b"z")
                return b"".join(parts)

    def _answer(self, name: str, args: list, byref: bool, context: Any) -> bytes:
        """One call's ``R`` (and ``A``) or ``E`` part."""
        try:
            if self._on_before is not None:
                self._fireBeforeInvokeEvent(name, args, byref, context)
            entry = self._entries.get(name.lower())
            if entry is None:
                entry = self._entries.get("*")
                if entry is None:
                    raise HproseException("Can't find this function %s()." % name)
            if entry.missing:
                result = entry.function(name, args)
            elif entry.context_at == len(args):
                result = entry.function(*args, context)
            else:
                result = entry.function(*args)
            if self._on_after is not None:
                self._fireAfterInvokeEvent(name, args, byref, result, context)
            mode = entry.mode
            if mode == _NORMAL:
                simple = entry.simple
                if simple is None:
                    simple = self.simple
                if byref:
                    return b"R" + codec.dumps(result, simple) + b"A" + codec.dumps(args, simple)
                return b"R" + codec.dumps(result, simple)
            if mode == _SERIALIZED:
                return b"R" + result
            if mode == _RAW:
                return b"" + result
            return _Whole(b"" + result)  # bytes-like, or a TypeError answered as an E part
        except Exception as e:
            self._fireErrorEvent(e, context)
            return b"E" + codec.string_bytes(compat.error_message(e, self.debug))

    def _doFunctionList(self, context: Any) -> bytes:  # noqa: N802
        data = self._function_list
        for _filter in self._HproseService__filters:  # type: ignore[attr-defined]
            data = _filter.outputFilter(data, context)
        return data


class _Whole(bytes):
    """A RawWithEndTag function's reply: sent as it is when alone in its request; in a batch,
    without its final ``z`` (the batch ends with one)."""


def _text(data: Any) -> str:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode("utf-8", "replace")
    return str(data)


class HttpService(Service, HproseHttpService):
    """``hprose.HproseHttpService`` (GET function list, cross-domain files, P3P, CORS,
    ``onSendHeader``) with ``Service``'s dispatch."""

    def _posts_plainly(self) -> bool:
        """Whether ``handle`` answers a POST with ``_handle``'s reply and a
        ``Content-Type: text/plain`` header, nothing else: no policy file, P3P, CORS or
        ``onSendHeader``, and 1.4.3's ``handle`` and ``_header`` (not a subclass's).  The
        HTTP server then answers without building what ``handle`` returns."""
        return (self._clientAccessPolicyXmlContent is None  # type: ignore[attr-defined]
                and self._crossDomainXmlContent is None  # type: ignore[attr-defined]
                and not self.p3p and not self.crossDomain  # type: ignore[attr-defined]
                and self.onSendHeader is None  # type: ignore[attr-defined]
                and _plain_handle(type(self)))


_DIRECT: dict[type, bool] = {}
"""Classes that override ``_doInvoke`` or ``_answer`` (and not ``_direct``): their requests
take the general path, so what they override sees every call (``Service.__init_subclass__``
fills it in)."""

_PLAIN: dict[type, bool] = {}


def _plain_handle(cls: type) -> bool:
    """``cls`` keeps hprose 1.4.3's ``handle`` and ``_header`` (worked out once per class)."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = (getattr(cls, "handle", None) is HproseHttpService.handle
                               and getattr(cls, "_header", None) is HproseHttpService._header)
    return plain

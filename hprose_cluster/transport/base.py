"""The hprose client surface, independent of how bytes travel.

``BaseClient`` offers what ``hprose.HttpClient`` offers (``client.hello("x")``, ``invoke``,
``useService`` proxies, filters, ``onError``, ``simple``, ``timeout``, the ``callback=`` mode)
and leaves one method to its subclasses: ``_round_trip(request, deadline, **options)``, which
sends one encoded request and returns the raw reply bytes (``deadline``: a
``hprose_cluster.deadline.Deadline``).  Encoding and decoding happen here,
once, so every transport and ``ClusterClient`` share them (and the hprose 1.4.3 fixes in
``hprose_cluster.compat``).

A ``Transport`` is the small interface every wire implements: ``round_trip`` plus ``close``.
"""

from __future__ import annotations

import inspect
import threading
from io import BytesIO
from typing import Any, Callable, Protocol, Sequence

import hprose
from hprose.common import HproseException, HproseResultMode
from hprose.io import HproseReader, HproseTags, HproseWriter

from .. import compat
from ..deadline import Deadline

compat.apply()


class Transport(Protocol):
    """Moves one encoded hprose request to one server and brings its reply back."""

    url: str

    def round_trip(self, request: bytes, deadline: Deadline) -> bytes:
        """Send ``request``; return the reply body, all before ``deadline``.

        Raises ``ConnectError`` when the request never left, ``CallTimeout`` when no reply came
        in time, ``TransportError`` (``sent=True``) for any other failure after sending.
        """

    def close(self) -> None:
        """Close every connection; later calls may reopen them."""


class _Method:
    """``client.a.b(...)`` calls ``a_b``, as hprose does."""

    __slots__ = ("_invoke", "_name")

    def __init__(self, invoke: Callable[..., Any], name: str):
        self._invoke = invoke
        self._name = name

    def __getattr__(self, name: str) -> "_Method":
        return _Method(self._invoke, self._name + "_" + name)

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self._invoke(self._name, list(args), **options)


class _Proxy:
    __slots__ = ("_invoke",)

    def __init__(self, invoke: Callable[..., Any]):
        self._invoke = invoke

    def __getattr__(self, name: str) -> _Method:
        return _Method(self._invoke, name)


def encode_request(name: str, args: Sequence[Any], byref: bool, simple: bool) -> bytes:
    """``C`` + name + (args list, optional byref ``t``) + ``z``, as every hprose peer writes it."""
    stream = BytesIO()
    writer = HproseWriter(stream, simple)
    stream.write(HproseTags.TagCall)
    writer.writeString(name)
    if len(args) > 0 or byref:
        writer.reset()
        writer.writeList(list(args))
        if byref:
            writer.writeBoolean(True)
    stream.write(HproseTags.TagEnd)
    return stream.getvalue()


def decode_reply(data: bytes, args: list | None, result_mode: int) -> Any:
    """Turn a reply into a result, or raise ``HproseException`` for an ``E`` reply.

    ``args`` is updated in place when the reply carries byref arguments (``A`` tag).
    """
    if not data or data[-1:] != HproseTags.TagEnd:
        raise HproseException("Wrong Response: %r" % (data[:200],))
    if result_mode == HproseResultMode.RawWithEndTag:
        return data
    if result_mode == HproseResultMode.Raw:
        return data[:-1]
    stream = BytesIO(data)
    reader = HproseReader(stream)
    result = None
    error = None
    while True:
        tag = stream.read(1)
        if tag == HproseTags.TagEnd:
            break
        if tag == HproseTags.TagResult:
            if result_mode == HproseResultMode.Normal:
                reader.reset()
                result = reader.unserialize()
            else:
                raw = reader.readRaw()
                result = raw.getvalue()
        elif tag == HproseTags.TagArgument:
            reader.reset()
            values = reader.readList()
            if isinstance(args, list):
                for i in range(min(len(args), len(values))):
                    args[i] = values[i]
        elif tag == HproseTags.TagError:
            reader.reset()
            error = reader.readString()
        else:
            raise HproseException("Wrong Response: %r" % (data[:200],))
    if error is not None:
        raise HproseException(error)
    return result


def _call_with_arity(func: Callable[..., Any], *values: Any) -> Any:
    """Call a user callback with as many of ``values`` as it accepts (hprose's convention)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return func(*values)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return func(*values)
    count = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return func(*values[:count])


class BaseClient:
    """Everything of an hprose client except moving the bytes."""

    def __init__(self, *, timeout: float | None = 30.0, simple: bool = False):
        self.timeout = timeout
        self.simple = simple
        self.onError: Callable[..., Any] | None = None
        self._filters: list[Any] = []

    # --- hprose surface -------------------------------------------------------------------

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self.invoke, name)

    def useService(self, uri: str | None = None) -> _Proxy:  # noqa: N802 - hprose's name
        """A proxy whose attributes are remote methods (``uri`` is accepted and ignored)."""
        return _Proxy(self.invoke)

    def getFilter(self) -> Any:  # noqa: N802
        return self._filters[0] if self._filters else None

    def setFilter(self, _filter: Any) -> None:  # noqa: N802
        self._filters = [] if _filter is None else [_filter]

    filter = property(getFilter, setFilter)

    def addFilter(self, _filter: Any) -> None:  # noqa: N802
        self._filters.append(_filter)

    def removeFilter(self, _filter: Any) -> None:  # noqa: N802
        self._filters.remove(_filter)

    def invoke(
        self,
        name: str,
        args: Sequence[Any] = (),
        callback: Callable[..., Any] | None = None,
        onerror: Callable[..., Any] | None = None,
        byref: bool = False,
        resultMode: int = HproseResultMode.Normal,  # noqa: N803
        simple: bool | None = None,
        **options: Any,
    ) -> Any:
        """Call ``name`` remotely.

        Synchronous unless ``callback`` is given: then the call runs on a daemon thread and
        ``callback(result)`` (or ``callback()``, ``callback(result, args)``) is called with the
        result, and ``onerror(name, error)`` (default ``self.onError``) with a failure.
        Extra keyword ``options`` go to the transport (``timeout=``, ``idempotent=``, ...).
        """
        if simple is None:
            simple = self.simple
        args = list(args)
        if callback is None:
            return self._invoke(name, args, byref, resultMode, simple, **options)
        if not callable(callback):
            raise HproseException("callback must be callable")
        if onerror is None:
            onerror = self.onError
        if onerror is not None and not callable(onerror):
            raise HproseException("onerror must be callable")

        def run() -> None:
            try:
                result = self._invoke(name, args, byref, resultMode, simple, **options)
            except Exception as error:  # handed to the user's onerror
                if onerror is not None:
                    _call_with_arity(onerror, name, error)
                return
            _call_with_arity(callback, result, args)

        thread = threading.Thread(target=run, name="hprose-cluster-async-%s" % name, daemon=True)
        thread.start()
        return thread

    # --- the pipeline ---------------------------------------------------------------------

    def _encode(self, name: str, args: list, byref: bool, simple: bool) -> bytes:
        data = encode_request(name, args, byref, simple)
        for _filter in self._filters:
            data = _filter.outputFilter(data, self)
        return data

    def _decode(self, data: bytes, args: list, result_mode: int) -> Any:
        for _filter in reversed(self._filters):
            data = _filter.inputFilter(data, self)
        return decode_reply(data, args, result_mode)

    def _invoke(self, name: str, args: list, byref: bool, result_mode: int, simple: bool,
                **options: Any) -> Any:
        request = self._encode(name, args, byref, simple)
        deadline = Deadline(options.pop("timeout", self.timeout))
        reply = self._round_trip(request, deadline, **options)
        return self._decode(reply, args, result_mode)

    def _round_trip(self, request: bytes, deadline: Deadline, **options: Any) -> bytes:
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections and threads; subclasses extend it."""

    def __enter__(self) -> "BaseClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["BaseClient", "Transport", "encode_request", "decode_reply", "hprose"]

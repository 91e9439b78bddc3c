"""The hprose client surface, independent of how bytes travel.

``BaseClient`` is an ``hprose.HproseClient`` and offers what ``hprose.HttpClient`` offers
(``client.hello("x")``, ``invoke``, ``useService`` proxies, filters, ``onError``, ``simple``,
``timeout``, the ``callback=`` mode, by-reference arguments written back into the caller's
list) and leaves one method to its subclasses: ``_round_trip(request, deadline, **options)``,
which sends one encoded request and returns the raw reply bytes (``deadline``: a
``hprose_cluster.deadline.Deadline``).  Encoding and decoding happen here,
once, so every transport and ``ClusterClient`` share them (and the hprose 1.4.3 fixes in
``hprose_cluster.compat``).

A ``Transport`` is the small interface every wire implements: ``round_trip`` plus ``close``.
"""

from __future__ import annotations

import inspect
import sys
import threading
from io import BytesIO
from typing import Any, Callable, Protocol, Sequence

import hprose
from hprose.common import HproseException, HproseResultMode
from hprose.io import HproseReader, HproseTags

from .. import codec, compat
from ..deadline import Deadline
from ..errors import ConfigError

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
    """``C`` + name + (args list, optional byref ``t``) + ``z``, as every hprose peer writes it
    (the bytes of hprose's own client: references count from the argument list)."""
    if len(args) > 0 or byref:
        return b"".join((b"C", codec.string_bytes(name), codec.dumps(list(args), simple),
                         b"tz" if byref else b"z"))
    return b"C" + codec.string_bytes(name) + b"z"


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
    if result_mode == HproseResultMode.Normal:
        result = codec.scalar_result(data)  # the common reply, read without a reader
        if result is not codec.MISS:
            return result
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


def _resolve(handler: Any, what: str) -> Callable[..., Any]:
    """A callback given as a callable, or (as hprose allows) as the name of one in
    ``__main__``; anything else is refused with hprose's error."""
    if isinstance(handler, str):
        handler = getattr(sys.modules["__main__"], handler, None)
    if not callable(handler):
        raise HproseException("%s must be callable" % what)
    return handler


class BaseClient(hprose.HproseClient):
    """Everything of an hprose client except moving the bytes.

    A subclass of ``hprose.HproseClient`` (``isinstance`` checks written for hprose hold) that
    reimplements its whole surface: ``invoke``, ``client.name(...)`` and ``useService()``
    proxies, ``setUri``/``uri``, the filters (``filter``, ``getFilter``, ``setFilter``,
    ``addFilter``, ``removeFilter``), ``onError``, ``simple`` and ``_sendAndReceive``.

    Call options (keywords of ``invoke`` beyond hprose's own) are the same for every client:
    ``timeout=`` (seconds for this call, None: no limit) and ``idempotent=`` (may the call be
    run twice; only a ``ClusterClient``, which has other servers to retry on, acts on it).
    Any other keyword is a ``TypeError`` naming it and the allowed ones.
    """

    CALL_OPTIONS: tuple[str, ...] = ("timeout", "idempotent")
    _uri: str | None  # set by hprose.HproseClient.__init__

    def __init__(self, *, timeout: float | None = 30.0, simple: bool = False):
        hprose.HproseClient.__init__(self)  # onError, simple, _uri, as hprose sets them
        self.timeout = timeout
        self.simple = simple
        self.onError: Callable[..., Any] | str | None = None
        self._filters: list[Any] = []

    # --- hprose surface -------------------------------------------------------------------

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError("%r object has no attribute %r" % (type(self).__name__, name))
        return _Method(self.invoke, name)

    def useService(self, uri: str | None = None) -> _Proxy:  # noqa: N802 - hprose's name
        """A proxy whose attributes are remote methods; a ``uri`` goes to ``setUri``."""
        if uri is not None:
            self.setUri(uri)
        return _Proxy(self.invoke)

    def setUri(self, uri: str) -> None:  # noqa: N802 - hprose's name
        """hprose's way to (re)name the server.  A client made for one URL keeps it: the same
        URL is accepted, another one is a ``ConfigError`` (make a new client for it); a
        ``ClusterClient`` calls a domain, not a URL, and ignores it."""
        current = self.uri
        if current is None or uri == current:
            return
        raise ConfigError("%s calls %s; it cannot be pointed at %r (make a new client for it)"
                          % (type(self).__name__, current, uri))

    def _get_uri(self) -> str | None:
        return self._uri

    def _set_uri(self, uri: str) -> None:
        if self._uri is None:
            self._uri = uri
        else:
            self.setUri(uri)

    uri = property(_get_uri, _set_uri, doc="The server URL this client calls (None: a domain).")

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
        callback: Callable[..., Any] | str | None = None,
        onerror: Callable[..., Any] | str | None = None,
        byref: bool = False,
        resultMode: int = HproseResultMode.Normal,  # noqa: N803
        simple: bool | None = None,
        **options: Any,
    ) -> Any:
        """Call ``name`` remotely.

        With ``byref=True`` the server's values of the arguments after the call are written
        back into ``args`` when it is a list (the caller's own list, as hprose does).
        Synchronous unless ``callback`` is given (a callable, or the name of a function in
        ``__main__``): then the call runs on a daemon thread (returned) and ``callback(result)``
        (or ``callback()``, ``callback(result, args)``) is called with the result, and
        ``onerror(name, error)`` (default ``self.onError``) with a failure.
        """
        unknown = [key for key in options if key not in self.CALL_OPTIONS]
        if unknown:
            raise TypeError("%s.invoke() got unknown call option(s) %s (allowed: %s)"
                            % (type(self).__name__, ", ".join(map(repr, sorted(unknown))),
                               ", ".join(self.CALL_OPTIONS)))
        if simple is None:
            simple = self.simple
        if not isinstance(args, list):
            args = list(args)
        if callback is None:
            return self._invoke(name, args, byref, resultMode, simple, **options)
        callback = _resolve(callback, "callback")
        if onerror is None:
            onerror = self.onError
        if onerror is not None:
            onerror = _resolve(onerror, "onerror")
        done, failed = callback, onerror

        def run() -> None:
            try:
                result = self._invoke(name, args, byref, resultMode, simple, **options)
            except Exception as error:  # handed to the user's onerror
                if failed is not None:
                    _call_with_arity(failed, name, error)
                return
            _call_with_arity(done, result, args)

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

    def _sendAndReceive(self, data: bytes) -> bytes:  # noqa: N802 - hprose's transport hook
        """hprose's transport method: one request's bytes out, the reply's bytes back."""
        return self._round_trip(data, Deadline(self.timeout))

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections and threads; subclasses extend it."""

    def __enter__(self) -> "BaseClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["BaseClient", "Transport", "encode_request", "decode_reply", "hprose"]

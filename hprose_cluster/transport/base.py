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
from ..codec import MISS, encode_call, scalar_result
from ..deadline import Deadline, deadline_after
from ..errors import ConfigError

compat.apply()

_NORMAL = HproseResultMode.Normal
_MAX_KEPT_METHODS = 256  # instance attributes, the methods kept among them


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
    """``client.a.b(...)`` calls ``a_b``, as hprose does.  ``call``: the client's plain call
    (``name, args``), taken when no call option is given."""

    __slots__ = ("_invoke", "_name", "_call")

    def __init__(self, invoke: Callable[..., Any], name: str,
                 call: Callable[[str, Sequence[Any]], Any] | None = None):
        self._invoke = invoke
        self._name = name
        self._call = call

    def __getattr__(self, name: str) -> "_Method":
        return _Method(self._invoke, self._name + "_" + name, self._call)

    def __call__(self, *args: Any, **options: Any) -> Any:
        if options or self._call is None:
            return self._invoke(self._name, list(args), **options)
        return self._call(self._name, args)


class _Proxy:
    __slots__ = ("_invoke", "_call")

    def __init__(self, invoke: Callable[..., Any],
                 call: Callable[[str, Sequence[Any]], Any] | None = None):
        self._invoke = invoke
        self._call = call

    def __getattr__(self, name: str) -> _Method:
        return _Method(self._invoke, name, self._call)


def encode_request(name: str, args: Sequence[Any], byref: bool, simple: bool) -> bytes:
    """``C`` + name + (args list, optional byref ``t``) + ``z``, as every hprose peer writes it
    (the bytes of hprose's own client: references count from the argument list)."""
    return encode_call(name, args, byref, simple)


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
    _plain_pipeline = True  # _invoke, _encode and _decode are these (see __init_subclass__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass with a pipeline of its own (ClusterClient's failover) gets every call
        # through its _invoke; the others get _call's shortcut
        cls._plain_pipeline = (cls._invoke is BaseClient._invoke
                               and cls._encode is BaseClient._encode
                               and cls._decode is BaseClient._decode)

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
        method = _Method(self.invoke, name, self._call)
        # kept on the instance, so the next ``client.name`` is a plain attribute read (a miss
        # that ends here costs an AttributeError first); a _Method holds nothing that changes
        names = self.__dict__
        if len(names) < _MAX_KEPT_METHODS:
            names[name] = method
        return method

    def useService(self, uri: str | None = None) -> _Proxy:  # noqa: N802 - hprose's name
        """A proxy whose attributes are remote methods; a ``uri`` goes to ``setUri``."""
        if uri is not None:
            self.setUri(uri)
        return _Proxy(self.invoke, self._call)

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
        if (not options and callback is None and not byref and resultMode == _NORMAL
                and simple is None):
            return self._call(name, args if isinstance(args, (list, tuple)) else list(args))
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

    def _call(self, name: str, args: Sequence[Any]) -> Any:
        """``invoke(name, args)`` without call options: the common call, in a few steps.

        The same bytes out and the same result (or error) back as ``_invoke`` with the
        defaults; it is ``_invoke`` itself when filters are set or a subclass has its own
        pipeline.  A list ``args`` is the caller's: an ``A`` reply updates it, as in invoke.
        """
        values = args if type(args) is list else None
        if self._filters or not self._plain_pipeline:
            return self._invoke(name, list(args) if values is None else values, False,
                                _NORMAL, self.simple)
        reply = self._send(encode_call(name, args, False, self.simple), self.timeout)
        result = scalar_result(reply)  # the common reply, read without a reader
        if result is MISS:
            result = decode_reply(reply, values, _NORMAL)
        return result

    def _send(self, request: bytes, timeout: float | None) -> bytes:
        """``_round_trip`` for a call with the client's own options; a transport with a
        cheaper way may take this place (an instance attribute, set by the subclass)."""
        return self._round_trip(request, deadline_after(timeout))

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


class TransportClient(BaseClient):
    """A client of one server over one ``Transport``, ``self.transport`` (the TCP, unix and
    WebSocket clients): its URL, its round trips and its closing are the transport's."""

    transport: Transport

    @property
    def uri(self) -> str:
        return self.transport.url

    def _round_trip(self, request: bytes, deadline: Deadline, **options: Any) -> bytes:
        # Options such as idempotent= matter to ClusterClient, not to a single connection.
        return self.transport.round_trip(request, deadline)

    def close(self) -> None:
        self.transport.close()


__all__ = ["BaseClient", "Transport", "encode_request", "decode_reply", "hprose"]

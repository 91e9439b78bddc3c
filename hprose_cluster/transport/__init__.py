"""hprose transports: how one encoded request reaches one server, chosen by URL scheme."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import BaseClient, Transport

HTTP_SCHEMES = ("http", "https")
TCP_SCHEMES = ("tcp", "tcp4", "tcp6")
WEBSOCKET_SCHEMES = ("ws", "wss")
UNIX_SCHEMES = ("unix",)


def _http(url: str, options: dict[str, Any]) -> Transport:
    from .http import HttpTransport
    if options["ssl_context"] is None:
        del options["ssl_context"]  # HttpTransport picks the system default for https
    options.pop("full_duplex")
    return HttpTransport(url, **options)


def _tcp(url: str, options: dict[str, Any]) -> Transport:
    from .tcp import TcpTransport
    options.pop("ssl_context")  # TLS over tcp:// is configured per transport, not by scheme
    return TcpTransport(url, **options)


def _websocket(url: str, options: dict[str, Any]) -> Transport:
    from .websocket import WebSocketTransport
    options.pop("full_duplex")
    options.pop("pool_size", None)  # one connection carries every call
    return WebSocketTransport(url, **options)


def _unix(url: str, options: dict[str, Any]) -> Transport:
    from .unix import UnixTransport
    options.pop("ssl_context")
    return UnixTransport(url, **options)


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], Transport]] = {}
for _schemes, _factory in ((HTTP_SCHEMES, _http), (TCP_SCHEMES, _tcp),
                           (WEBSOCKET_SCHEMES, _websocket), (UNIX_SCHEMES, _unix)):
    for _scheme in _schemes:
        _FACTORIES[_scheme] = _factory

SCHEMES = tuple(_FACTORIES)


def open_transport(url: str, *, ssl_context: Any = None, full_duplex: bool = False,
                   pool_size: int | None = None, connect_timeout: float = 5.0) -> Transport:
    """A Transport for ``url``, by its scheme: HTTP(S), hprose TCP, WebSocket (ws, wss) or a
    unix socket (``unix:/path``).  ``ssl_context`` is for https and wss; ``full_duplex`` and
    ``pool_size`` for tcp and unix (``pool_size`` for http too)."""
    scheme = urlsplit(url).scheme
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise ConfigError("cannot call %r: unknown scheme %r (supported: %s)"
                          % (url, scheme, ", ".join(SCHEMES)))
    options: dict[str, Any] = {"connect_timeout": connect_timeout, "ssl_context": ssl_context,
                               "full_duplex": full_duplex}
    if pool_size is not None:
        options["pool_size"] = pool_size
    return factory(url, options)


__all__ = ["BaseClient", "SCHEMES", "Transport", "open_transport"]

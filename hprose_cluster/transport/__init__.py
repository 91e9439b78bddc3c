"""hprose transports: how one encoded request reaches one server, chosen by URL scheme."""

from __future__ import annotations

import ssl
from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import BaseClient, Transport

HTTP_SCHEMES = ("http", "https")
PLAIN_TCP_SCHEMES = ("tcp", "tcp4", "tcp6")
TLS_TCP_SCHEMES = ("tcps", "tcp4s", "tcp6s", "tls")
TCP_SCHEMES = PLAIN_TCP_SCHEMES + TLS_TCP_SCHEMES
WEBSOCKET_SCHEMES = ("ws", "wss")
UNIX_SCHEMES = ("unix",)


def _http(url: str, options: dict[str, Any]) -> Transport:
    from .http import HttpTransport
    if options["ssl_context"] is None:
        del options["ssl_context"]  # HttpTransport picks the system default for https
    del options["full_duplex"], options["tcp_tls"]
    return HttpTransport(url, **options)


def _tcp(url: str, options: dict[str, Any]) -> Transport:
    from .tcp import TcpTransport
    ssl_context = options.pop("ssl_context")
    if urlsplit(url).scheme in TLS_TCP_SCHEMES or options.pop("tcp_tls"):
        options["ssl_context"] = ssl_context if ssl_context is not None \
            else ssl.create_default_context()
    options.pop("tcp_tls", None)
    return TcpTransport(url, **options)


def _websocket(url: str, options: dict[str, Any]) -> Transport:
    from .websocket import WebSocketTransport
    del options["full_duplex"], options["tcp_tls"]
    options.pop("pool_size", None)  # one connection carries every call
    return WebSocketTransport(url, **options)


def _unix(url: str, options: dict[str, Any]) -> Transport:
    from .unix import UnixTransport
    del options["ssl_context"], options["tcp_tls"]  # a unix socket never leaves the host
    return UnixTransport(url, **options)


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], Transport]] = {}
for _schemes, _factory in ((HTTP_SCHEMES, _http), (TCP_SCHEMES, _tcp),
                           (WEBSOCKET_SCHEMES, _websocket), (UNIX_SCHEMES, _unix)):
    for _scheme in _schemes:
        _FACTORIES[_scheme] = _factory

SCHEMES = tuple(_FACTORIES)


def open_transport(url: str, *, ssl_context: Any = None, full_duplex: bool = False,
                   pool_size: int | None = None, connect_timeout: float = 5.0,
                   tcp_tls: bool = False) -> Transport:
    """A Transport for ``url``, by its scheme: HTTP(S), hprose TCP (plain or TLS), WebSocket
    (``ws``, ``wss``) or a unix socket (``unix:/path``).

    ``ssl_context`` is used for ``https://``, ``wss://`` and the TLS TCP schemes, which
    default to ``ssl.create_default_context()`` without one; for plain ``tcp://`` URLs only
    with ``tcp_tls=True`` (TLS for a domain whose servers advertise ``tcp://``, as Go's
    client).  ``full_duplex`` is for tcp and unix, ``pool_size`` for http, tcp and unix.
    """
    scheme = urlsplit(url).scheme
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise ConfigError("cannot call %r: unknown scheme %r (supported: %s)"
                          % (url, scheme, ", ".join(SCHEMES)))
    options: dict[str, Any] = {"connect_timeout": connect_timeout, "ssl_context": ssl_context,
                               "full_duplex": full_duplex, "tcp_tls": tcp_tls}
    if pool_size is not None:
        options["pool_size"] = pool_size
    return factory(url, options)


__all__ = ["BaseClient", "SCHEMES", "Transport", "open_transport"]

"""hprose transports: how one encoded request reaches one server, chosen by URL scheme."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import BaseClient, Transport

HTTP_SCHEMES = ("http", "https")
PLAIN_TCP_SCHEMES = ("tcp", "tcp4", "tcp6")
TLS_TCP_SCHEMES = ("tcps", "tcp4s", "tcp6s", "tls")
TCP_SCHEMES = PLAIN_TCP_SCHEMES + TLS_TCP_SCHEMES


def open_transport(url: str, *, ssl_context: Any = None, full_duplex: bool = False,
                   pool_size: int | None = None, connect_timeout: float = 5.0,
                   tcp_tls: bool = False) -> Transport:
    """A Transport for ``url``: HTTP(S) or hprose TCP, by its scheme.

    ``ssl_context`` is used for ``https://`` and the TLS TCP schemes, which default to
    ``ssl.create_default_context()`` without one; for plain ``tcp://`` URLs only with
    ``tcp_tls=True`` (TLS for a domain whose servers advertise ``tcp://``, as Go's client).
    """
    scheme = urlsplit(url).scheme
    options: dict[str, Any] = {"connect_timeout": connect_timeout}
    if pool_size is not None:
        options["pool_size"] = pool_size
    if scheme in HTTP_SCHEMES:
        from .http import HttpTransport
        if ssl_context is not None:
            options["ssl_context"] = ssl_context
        return HttpTransport(url, **options)
    if scheme in TCP_SCHEMES:
        from .tcp import TcpTransport
        if scheme in TLS_TCP_SCHEMES or tcp_tls:
            options["ssl_context"] = ssl_context if ssl_context is not None \
                else ssl.create_default_context()
        return TcpTransport(url, full_duplex=full_duplex, **options)
    raise ConfigError("cannot call %r: unknown scheme %r (supported: %s)"
                      % (url, scheme, ", ".join(HTTP_SCHEMES + TCP_SCHEMES)))


__all__ = ["BaseClient", "Transport", "open_transport"]

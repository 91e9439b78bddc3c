"""hprose transports: how one encoded request reaches one server, chosen by URL scheme."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import BaseClient, Transport

HTTP_SCHEMES = ("http", "https")
TCP_SCHEMES = ("tcp", "tcp4", "tcp6")


def open_transport(url: str, *, ssl_context: Any = None, full_duplex: bool = False,
                   pool_size: int | None = None, connect_timeout: float = 5.0) -> Transport:
    """A Transport for ``url``: HTTP(S) or hprose TCP, by its scheme."""
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
        return TcpTransport(url, full_duplex=full_duplex, **options)
    raise ConfigError("cannot call %r: unknown scheme %r (supported: %s)"
                      % (url, scheme, ", ".join(HTTP_SCHEMES + TCP_SCHEMES)))


__all__ = ["BaseClient", "Transport", "open_transport"]

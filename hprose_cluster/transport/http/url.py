"""An hprose HTTP URL, checked once for the blocking and the asyncio HTTP transports."""

from __future__ import annotations

import urllib.parse
from typing import NamedTuple

from ...errors import ConfigError

__all__ = ["HttpUrl", "parse_http_url"]


class HttpUrl(NamedTuple):
    scheme: str  # "http" or "https"
    host: str  # brackets of an IPv6 literal removed
    port: int  # 80 or 443 when the URL has none
    target: str  # the request line's path and query, "/" at least


def parse_http_url(url: str) -> HttpUrl:
    """``http(s)://host[:port]/path?query`` -> its parts; ``ConfigError`` naming the URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError("bad HTTP URL %r: %s" % (url, error)) from error
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError("unsupported URL scheme %r in %r: expected http:// or https://"
                          % (parts.scheme, url))
    if not parts.hostname:
        raise ConfigError("no host in HTTP URL %r" % (url,))
    return HttpUrl(scheme, parts.hostname,
                   port if port is not None else (443 if scheme == "https" else 80),
                   (parts.path or "/") + ("?" + parts.query if parts.query else ""))

"""hprose TCP URLs: ``tcp://``, ``tcp4://``, ``tcp6://`` and the TLS schemes of hprose for
Node.js (``tcps://``, ``tcp4s://``, ``tcp6s://``, ``tls://``)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ...errors import ConfigError

__all__ = ["TLS_SCHEMES", "parse_tcp_url"]

_SCHEMES = {"tcp": socket.AF_UNSPEC, "tcp4": socket.AF_INET, "tcp6": socket.AF_INET6,
            # TLS over TCP, as hprose for Node.js names it (Go uses tcp:// plus a TLS config)
            "tcps": socket.AF_UNSPEC, "tcp4s": socket.AF_INET, "tcp6s": socket.AF_INET6,
            "tls": socket.AF_UNSPEC}
TLS_SCHEMES = frozenset(("tcps", "tcp4s", "tcp6s", "tls"))


def parse_tcp_url(url: str) -> tuple[str, str, int, int]:
    """``tcp://host:port/anything`` -> ``(scheme, host, port, address family)``.

    The path is ignored (Go ignores it too).  ``ConfigError`` naming the URL for an unknown
    scheme or a missing host or port.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except (ValueError, AttributeError, TypeError) as error:
        raise ConfigError("bad hprose TCP URL %r: %s" % (url, error)) from error
    if scheme not in _SCHEMES:
        raise ConfigError(
            "bad hprose TCP URL %r: scheme must be one of %s, not %r"
            % (url, ", ".join(_SCHEMES), scheme))
    if not host:
        raise ConfigError("bad hprose TCP URL %r: no host" % (url,))
    if port is None or port == 0:
        raise ConfigError("bad hprose TCP URL %r: no port" % (url,))
    return scheme, host, port, _SCHEMES[scheme]

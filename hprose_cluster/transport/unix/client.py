"""The hprose unix-socket client: ``TcpTransport`` with AF_UNIX addresses, nothing copied.

Everything of the TCP transport holds: half duplex (a pool of connections, one request at a
time on each, what Go's client does) or ``full_duplex=True`` (one connection, request ids,
replies out of order), per-call deadlines, the same error mapping.  A socket file that does
not exist, or that no server listens on, is a ``ConnectError`` (``sent=False``).
"""

from __future__ import annotations

import socket
from typing import Any

from ...errors import ConfigError
from ...record import unix_socket_path
from .. import framing
from ..base import TransportClient
from ..tcp import TcpTransport

__all__ = ["UnixTransport", "UnixClient"]


class UnixTransport(TcpTransport):
    """The hprose TCP wire over the unix socket of ``unix:/path/to.sock``."""

    path: str

    def __init__(self, url: str, *, full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0,
                 max_frame: int = framing.DEFAULT_MAX_FRAME):
        super().__init__(url, full_duplex=full_duplex, pool_size=pool_size,
                         connect_timeout=connect_timeout, max_frame=max_frame)

    def __repr__(self) -> str:
        return "UnixTransport(%r, %s duplex)" % (self.url, "full" if self.full_duplex else "half")

    def _parse_url(self, url: str) -> tuple[str, str, int, int]:
        try:
            self.path = unix_socket_path(url)
        except ConfigError as error:
            raise ConfigError("bad hprose unix socket URL %r: %s" % (url, error)) from error
        return "unix", self.path, 0, socket.AF_UNIX

    def _addresses(self) -> list[tuple[int, int, int, Any]]:
        return [(socket.AF_UNIX, socket.SOCK_STREAM, 0, self.path)]


class UnixClient(TransportClient):
    """A drop-in hprose client over a unix socket: ``UnixClient("unix:/run/hello.sock")``.

    ``timeout`` is the default per-call timeout (None waits for ever); the other options are
    ``UnixTransport``'s.
    """

    def __init__(self, uri: str, *, timeout: float | None = 30.0, simple: bool = False,
                 full_duplex: bool = False, pool_size: int | None = None,
                 connect_timeout: float | None = 5.0,
                 max_frame: int = framing.DEFAULT_MAX_FRAME):
        super().__init__(timeout=timeout, simple=simple)
        self.transport = UnixTransport(uri, full_duplex=full_duplex, pool_size=pool_size,
                                       connect_timeout=connect_timeout, max_frame=max_frame)

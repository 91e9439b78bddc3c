"""hprose over unix sockets (``unix:/path/to.sock``, Go's spelling): TCP's framing, half and
full duplex, on AF_UNIX, for services that only talk to clients on the same host."""

from .client import UnixClient, UnixTransport
from .server import UnixServer

__all__ = ["UnixClient", "UnixServer", "UnixTransport"]

"""The hprose TCP transport (``tcp://``, ``tcp4://``, ``tcp6://``): client and server."""

from .client import TcpClient, TcpTransport, parse_tcp_url
from .server import TcpContext, TcpServer

__all__ = ["TcpTransport", "TcpClient", "TcpServer", "TcpContext", "parse_tcp_url"]

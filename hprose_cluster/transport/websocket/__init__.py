"""hprose over WebSocket (``ws://``, ``wss://``), wire-compatible with hprose-golang v2.

Needs the ``websockets`` package (the ``websocket`` extra): its sans-I/O protocol runs over our
own sockets.  ``WebSocketTransport`` and ``WebSocketClient`` call a server; ``WebSocketServer``
serves one (and plain hprose HTTP POSTs on the same port, as Go's does).
"""

from .client import WebSocketClient, WebSocketTransport
from .protocol import DEFAULT_MAX_MESSAGE, DRAIN_CLOSE, parse_ws_url
from .server import WebSocketContext, WebSocketServer

__all__ = ["DEFAULT_MAX_MESSAGE", "DRAIN_CLOSE", "WebSocketClient", "WebSocketContext",
           "WebSocketServer", "WebSocketTransport", "parse_ws_url"]

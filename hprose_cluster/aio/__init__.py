"""hprose-cluster for asyncio: ``AsyncClusterClient`` and its transports on the event loop.

``AsyncClusterClient`` is ``ClusterClient`` for asyncio code (``await client.hello("x")``):
same domain, discovery, failover policy, selectors and errors; transports that keep many calls
in flight on a few connections (full-duplex TCP, WebSocket) or on kept-alive HTTP connections.
"""

from .base import AsyncTransport, open_async_transport
from .client import AsyncClusterClient

__all__ = ["AsyncClusterClient", "AsyncTransport", "open_async_transport"]

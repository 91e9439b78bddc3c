"""hprose-cluster: a set of hprose RPC servers as one service, with etcd as the registry.

Servers register themselves in a *service domain* (``ClusterHttpServer``, ``ClusterTcpServer``,
``ClusterWebSocketServer``, ``ClusterUnixServer``, or ``Registrar`` for any URL); clients follow the domain (``ClusterClient``, ``Discovery``) and
always call a live server.
"""

from .aio import AsyncClusterClient
from .client import ClusterClient
from .discovery import Discovery, ServerView
from .errors import (CallTimeout, ConfigError, ConnectError, EtcdError, FrameError,
                     HproseClusterError, NoServerAvailable, RegistrationError, TransportError)
from .etcd import EtcdConfig
from .failover import FailoverPolicy
from .record import RecordError, ServerInfo
from .registrar import Registrar
from typing import Any

from .server import ClusterHttpServer, ClusterServer, ClusterTcpServer, ClusterUnixServer

__version__ = "0.1.0"

__all__ = [
    "AsyncClusterClient", "CallTimeout", "ClusterClient", "ClusterHttpServer", "ClusterServer",
    "ClusterTcpServer", "ClusterUnixServer",
    "ConfigError", "ConnectError", "Discovery", "EtcdConfig", "EtcdError", "FailoverPolicy",
    "FrameError", "HproseClusterError", "NoServerAvailable", "RecordError", "Registrar",
    "RegistrationError", "ServerInfo", "ServerView", "TransportError",
]


def __getattr__(name: str) -> Any:
    """``ClusterWebSocketServer`` is imported on first use: it needs the ``websocket`` extra
    (``websockets``), so it is not in ``__all__`` and ``import *`` works without it."""
    if name == "ClusterWebSocketServer":
        from . import server
        return server.ClusterWebSocketServer
    raise AttributeError("module %r has no attribute %r" % (__name__, name))

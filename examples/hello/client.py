"""Call the hello service of a domain through etcd.

    python examples/hello/client.py [tcp.hello.server] [--etcd 127.0.0.1:2379]
"""

import argparse

from hprose_cluster import ClusterClient

parser = argparse.ArgumentParser()
parser.add_argument("domain", nargs="?", default="tcp.hello.server")
parser.add_argument("--etcd", default=None, help="etcd endpoints (default: $HPROSE_CLUSTER_ETCD)")
args = parser.parse_args()

with ClusterClient(args.domain, etcd=args.etcd) as client:
    print(client.hello("world"))
    print("1 + 2 =", client.sum(1, 2))
    print("served by", client.whoami())

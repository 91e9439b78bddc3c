"""Call the hello service through etcd: the client follows the domain and calls a live server.

    python examples/hello/client.py           # domain tcp.hello.server
    python examples/hello/client.py --http    # domain http.hello.server

etcd is $HPROSE_CLUSTER_ETCD, else 127.0.0.1:2379.
"""

import argparse

from hprose_cluster import ClusterClient

parser = argparse.ArgumentParser(description="Call the hello service of a domain.")
parser.add_argument("--http", action="store_true", help="the HTTP servers' domain")
args = parser.parse_args()
domain = "http.hello.server" if args.http else "tcp.hello.server"

with ClusterClient(domain) as client:
    print(client.hello("world"))
    print("1 + 2 =", client.sum(1, 2))
    print("answered by", client.whoami())

"""One hello server that registers itself in etcd.

    python examples/hello/server.py --transport tcp --etcd 127.0.0.1:2379
"""

import sys

from hprose_cluster.demo import serve_main

if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))

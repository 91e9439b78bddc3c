"""One hello server with a metrics port, as a subprocess (run by path; see ``tests.support.metrics``).

Prints ``READY <url> <pid>`` like ``python -m hprose_cluster.demo serve`` so that
``cluster_procs.ServerProc`` can start, SIGKILL and SIGTERM it; its record carries the
``Metrics`` URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="tcp")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--drain-delay", type=float, default=0.2)
    args = parser.parse_args()
    from hprose_cluster.demo import make_server

    server = make_server(args.transport, args.domain, etcd=args.etcd, ttl=args.ttl,
                         heartbeat=args.heartbeat, drain_delay=args.drain_delay, metrics_port=0)
    server.start(block=False)
    print("READY %s %d" % (server.url, os.getpid()), flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.05)
    server.stop(drain_timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calls per second of the hprose transports, side by side in one run.

    python benchmarks/bench_transports.py                 # 2 s per row
    python benchmarks/bench_transports.py --seconds 0.5   # a smoke run

The servers (our ``HttpServer`` and ``TcpServer``, each serving ``hello``) run in one
subprocess, so client and server do not share a GIL; the clients run here, with 1 and 8
threads.  Rows: hprose 1.4.3's ``hprose.HttpClient`` (a new connection per call) against our
HTTP server, our ``HttpClient`` (kept-alive connections), ``TcpClient`` half duplex (a pool of
connections, as Go) and ``TcpClient`` full duplex (one connection).  Each row runs a fixed time
(``--seconds``) with a cap on calls; the ratio column is against hprose's ``HttpClient`` with as many threads.
Contenders alternate in short rounds and the median is reported, since a shared machine's
load drifts.  The HTTP rows are skipped if ``hprose_cluster.transport.http`` is not importable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import hprose  # noqa: E402

from hprose_cluster.transport.tcp import TcpClient  # noqa: E402

try:
    from hprose_cluster.transport.http import HttpClient  # noqa: E402
except ImportError:  # being written by someone else; the HTTP rows are skipped
    HttpClient = None  # type: ignore[assignment,misc]

MAX_CALLS = 200_000

SERVER_SCRIPT = r"""
import sys, threading
from hprose_cluster.transport.tcp import TcpServer
def hello(name):
    return "Hello " + name
servers = []
tcp = TcpServer("127.0.0.1", 0)
tcp.add(hello)
tcp.start(block=False)
servers.append(tcp)
http_url = "-"
try:
    from hprose_cluster.transport.http import HttpServer
except ImportError:
    HttpServer = None
if HttpServer is not None:
    http = HttpServer("127.0.0.1", 0)
    http.add(hello)
    http.start(block=False)
    servers.append(http)
    http_url = "http://%s:%d/" % http.address
print(tcp.url, http_url, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
for server in servers:
    server.stop(drain_timeout=2)
"""


def measure(clients: list[Any], threads: int, seconds: float) -> int:
    """Calls completed by ``threads`` threads in ``seconds`` (at most MAX_CALLS / rounds)."""
    count = [0] * threads
    stop = threading.Event()
    budget = MAX_CALLS // threads

    def run(i: int) -> None:
        client = clients[i % len(clients)]
        n = 0
        while not stop.is_set() and n < budget:
            client.hello("bench")
            n += 1
        count[i] = n

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    stop.wait(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(count)


def compare(contenders: list[tuple[str, str, Callable[[], Any], bool]], threads: int,
            seconds: float, rounds: int) -> list[tuple[str, str, int, float]]:
    """Every contender for ``seconds`` in all, in ``rounds`` alternating slices (the order
    flips every round, so drift in a shared machine's load hits all alike); median rates."""
    made = []
    for name, server, make, shared in contenders:
        clients = [make()] if shared else [make() for _ in range(threads)]
        for client in clients:  # warm up: connect, first call
            client.hello("warm")
        made.append(clients)
    rates: list[list[float]] = [[] for _ in contenders]
    totals = [0] * len(contenders)
    for r in range(rounds):
        order = list(range(len(contenders)))
        if r % 2:
            order.reverse()
        for i in order:
            started = time.perf_counter()
            calls = measure(made[i], threads, seconds / rounds)
            rates[i].append(calls / (time.perf_counter() - started))
            totals[i] += calls
    for clients in made:
        for client in clients:
            if not isinstance(client, hprose.HproseClient):  # there .close is a remote call
                client.close()
    return [(name, server, totals[i], statistics.median(rates[i]))
            for i, (name, server, _, _) in enumerate(contenders)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per row (default 2)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating slices per row (default 5)")
    parser.add_argument("--threads", default="1,8", help="client thread counts (default 1,8)")
    options = parser.parse_args()

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        tcp_url, http_url = proc.stdout.readline().split()
        contenders: list[tuple[str, str, Callable[[], Any], bool]] = []
        if http_url != "-" and HttpClient is not None:
            contenders.append(("hprose 1.4.3 HttpClient", "HttpServer",
                               lambda: hprose.HttpClient(http_url), False))
            contenders.append(("HttpClient", "HttpServer",
                               lambda: HttpClient(http_url, timeout=30), True))
        contenders.append(("TcpClient half duplex", "TcpServer",
                           lambda: TcpClient(tcp_url, timeout=30), True))
        contenders.append(("TcpClient full duplex", "TcpServer",
                           lambda: TcpClient(tcp_url, timeout=30, full_duplex=True), True))

        print("| client | server | threads | calls | calls/s | vs hprose HttpClient |")
        print("|---|---|---:|---:|---:|---:|")
        for threads in [int(t) for t in options.threads.split(",")]:
            results = compare(contenders, threads, options.seconds, options.rounds)
            baseline = results[0][3] if results[0][0].startswith("hprose") else None
            for name, server, calls, rate in results:
                ratio = "%.1fx" % (rate / baseline) if baseline else "-"
                print("| %s | %s | %d | %d | %.0f | %s |"
                      % (name, server, threads, calls, rate, ratio), flush=True)
        print("\nPython %s, %d CPUs, load average %.1f, %.1f s per row in %d alternating "
              "rounds (median rate), servers in one subprocess."
              % (sys.version.split()[0], os.cpu_count() or 0, os.getloadavg()[0],
                 options.seconds, options.rounds))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(15)


if __name__ == "__main__":
    main()

"""Fairness of the half-duplex TCP pool: 8 threads share one TcpClient.

    python benchmarks/bench_pool_fairness.py               # 5 s per row
    python benchmarks/bench_pool_fairness.py --seconds 1   # a smoke run

A TcpServer serving ``hello`` runs in a subprocess; here 8 threads call ``hello`` back to back
through one TcpClient for a fixed time, once with ``pool_size=2`` (fewer connections than
callers: the threads must queue, which is where fairness shows) and once with the default
pool (sized to the callers, up to its cap).  Per row: calls/s, the fewest and most calls any
thread made (a fair pool keeps them close), and the p50/p99/max latency of one call.

For ``benchmarks/run.py`` the same measurement is ``pool_fairness(endpoint, settings)``,
returning ``common.Row`` values (add ``"7": ("pool fairness", "bench_pool_fairness",
"pool_fairness")`` to its ``SECTIONS``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import Row, percentile  # noqa: E402

from hprose_cluster.transport.tcp import TcpClient  # noqa: E402

THREADS = 8

SERVER = r"""
import sys
from hprose_cluster.transport.tcp import TcpServer
server = TcpServer("127.0.0.1", 0)
server.add(lambda name: "Hello " + name, "hello")
server.start(block=False)
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""


def measure(url: str, pool_size: int | None, seconds: float) -> dict[str, Any]:
    """8 threads for ``seconds``: per-thread call counts and every call's latency."""
    counts = [0] * THREADS
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    with TcpClient(url, timeout=10, pool_size=pool_size) as client:
        client.hello("warm")
        barrier = threading.Barrier(THREADS + 1)
        box = {"end": 0.0}

        def worker(index: int) -> None:
            barrier.wait()
            clock = time.perf_counter
            mine = latencies[index]
            end = box["end"]
            try:
                while True:
                    started = clock()
                    if started >= end:
                        break
                    client.hello("x")
                    mine.append(clock() - started)
            except BaseException as error:  # reported, never swallowed
                errors.append(error)
            counts[index] = len(mine)

        threads = [threading.Thread(target=worker, args=(i,), name="bench-fair-%d" % i)
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        box["end"] = time.perf_counter() + seconds
        barrier.wait()
        for thread in threads:
            thread.join(seconds + 30)
        opened = client.transport.pool.open_count if hasattr(client.transport, "pool") \
            else len(getattr(client.transport, "_open", ()))
    if errors:
        raise RuntimeError("calls failed: %r" % errors[:3])
    every = [x for per_thread in latencies for x in per_thread]
    return {"pool_size": pool_size, "calls": sum(counts), "rate": sum(counts) / seconds,
            "min_calls": min(counts), "max_calls": max(counts), "connections": opened,
            "p50_ms": percentile(every, 50) * 1e3, "p99_ms": percentile(every, 99) * 1e3,
            "max_ms": max(every) * 1e3}


def run_all(seconds: float) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (REPO, os.environ.get(
        "PYTHONPATH")))))
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        return [measure(url, pool_size, seconds) for pool_size in (2, None)]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


def _label(result: dict[str, Any]) -> str:
    size = result["pool_size"]
    return "pool_size=%d" % size if size else "default pool (%d opened)" % result["connections"]


def pool_fairness(endpoint: str, settings: Any, **_: Any) -> list[Row]:
    """Rows for benchmarks/run.py (``endpoint`` is unused: no etcd is involved)."""
    seconds = 1.0 if getattr(settings, "quick", False) else 5.0
    rows = []
    for result in run_all(seconds):
        spread = result["min_calls"] / result["max_calls"] if result["max_calls"] else 0.0
        rows.append(Row("7. pool fairness", "TCP half duplex, 8 threads, " + _label(result),
                        "calls per thread %d..%d (min/max %.2f), p99 %.2f ms, max %.1f ms, "
                        "%.0f calls/s" % (result["min_calls"], result["max_calls"], spread,
                                          result["p99_ms"], result["max_ms"], result["rate"]),
                        detail=result))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args()
    print("| pool | calls/s | calls per thread (min..max) | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in run_all(options.seconds):
        print("| %s | %.0f | %d..%d | %.2f ms | %.2f ms | %.1f ms |"
              % (_label(result), result["rate"], result["min_calls"], result["max_calls"],
                 result["p50_ms"], result["p99_ms"], result["max_ms"]))


if __name__ == "__main__":
    main()

"""Where the microseconds of one small call go: cProfile of one side of a ``bench_cpu`` path.

    python benchmarks/profile_call.py client tcp-half            # the client, in this process
    python benchmarks/profile_call.py server http --calls 5000   # the server, in this process
    python benchmarks/profile_call.py client tcp-full --sort cumulative --limit 40

The other side runs in a subprocess (``bench_cpu.py --serve`` / ``--client``), exactly as in
section 7.  For a server every thread it starts is profiled (``threading.Thread.run`` wrapped
here, one profiler per thread) and the stats are merged when the server stops.  Times are
CPU time of the profiled thread (``time.thread_time``), not wall time: on loopback a ``send``
wakes the peer, which may take the core, and wall time would charge that to the ``send``.
cProfile roughly doubles the cost of every Python call, so read the ranking and the call counts
per request, not the absolute times; ``--plain`` times the same calls without the profiler.
Not part of ``run.py``: a tool for reading, on loopback, bounded in calls.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_cpu  # noqa: E402


def _print_stats(stats: pstats.Stats, calls: int, sort: str, limit: int) -> None:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(limit)
    print("(%d calls profiled; divide ncalls by it for calls per request)" % calls)
    print(out.getvalue())


def profile_client(path: str, calls: int, sort: str, limit: int, plain: bool) -> None:
    kind = bench_cpu.PATHS[path][0]
    server = bench_cpu._Child(["--serve", kind])
    try:
        _, url, _pid = server.first.split()
        client, expected = bench_cpu._make_client(path, url)
        for _ in range(500):
            assert client.hello("w") == expected
        if plain:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                client.hello("w")
            print("plain: %.1f us CPU, %.1f us wall per call"
                  % ((time.process_time() - cpu) / calls * 1e6,
                     (time.perf_counter() - wall) / calls * 1e6))
            return
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for _ in range(calls):
            client.hello("w")
        profiler.disable()
        _print_stats(pstats.Stats(profiler), calls, sort, limit)
        if path != "hprose":
            client.close()
    finally:
        server.close()


def _profile_threads() -> list[cProfile.Profile]:
    """Wrap ``Thread.run`` so that every thread started from now on runs under a profiler."""
    profilers: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(time.thread_time)
        profilers.append(profiler)
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    return profilers


def profile_server(path: str, calls: int, sort: str, limit: int, plain: bool) -> None:
    kind = bench_cpu.PATHS[path][0]
    profilers = [] if plain else _profile_threads()
    stop: Any
    if kind == "floor":
        url, stop = bench_cpu._serve_floor()
    elif kind == "hprose":
        url, stop = bench_cpu._serve_hprose()
    else:
        url, stop = bench_cpu._serve_ours(kind)
    client = bench_cpu._Child(["--client", path, url])
    try:
        if client.first != "READY":
            raise RuntimeError(client.first)
        cpu = time.process_time()  # the profile also holds the client's one check call
        done, _cpu, wall = client.ask("run 600 %d" % calls, 660).split()
        used = time.process_time() - cpu
    finally:
        client.close()
        stop()
    if plain:
        print("plain: %.1f us server CPU, %.1f us wall per call"
              % (used / int(done) * 1e6, float(wall) / int(done) * 1e6))
        return
    time.sleep(0.5)  # connection threads see the client's close and finish their run()
    stats = None
    for profiler in profilers:
        try:
            one = pstats.Stats(profiler)
        except TypeError:  # a thread that never ran Python code under the profiler
            continue
        stats = one if stats is None else stats.add(one)
    if stats is None:
        raise RuntimeError("no thread was profiled")
    _print_stats(stats, int(done), sort, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=("client", "server"))
    parser.add_argument("path", choices=[p for p in bench_cpu.PATHS])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--plain", action="store_true", help="time without the profiler")
    args = parser.parse_args()
    sys.path.insert(0, bench_cpu.REPO)
    calls = min(args.calls, 200_000)
    (profile_client if args.side == "client" else profile_server)(
        args.path, calls, args.sort, args.limit, args.plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())

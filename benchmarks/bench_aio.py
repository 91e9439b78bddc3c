"""Calls per second and CPU per call of AsyncClusterClient, beside the threaded ClusterClient.

    python benchmarks/bench_aio.py             # the full run
    python benchmarks/bench_aio.py --quick     # a smoke run
    (or as a section of benchmarks/run.py: ``aio(etcd_endpoint, settings)``)

One hello server per transport runs in a subprocess (``python -m hprose_cluster.demo serve``),
registered in its own domain of an embedded etcd, so the client and server do not share a GIL
and the client's CPU (``time.process_time()`` of this process, divided by the calls made) is
the client's alone.  Rows, per transport:

- ``AsyncClusterClient``, 1, 100 and 1,000 calls in flight (tasks calling back to back), on one
  full-duplex connection per server, and for 1,000 also on 4 connections (the TCP server
  queues at most 64 requests per connection, so one connection caps what runs at once);
- ``ClusterClient`` (threads), 1 and 100 threads: half-duplex TCP (its default, a pool of
  connections) and full duplex (one shared connection), or HTTP keep-alive.

Contenders alternate in short rounds (the order flips every round) and medians are reported,
since the machine is small and shared.  The WebSocket rows run when a ws:// hello server can
be started (``--transport ws`` of the demo); otherwise they are listed as skipped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import Row, ServerProcess, Settings, fmt_rate, median, new_domain  # noqa: E402

from hprose_cluster import AsyncClusterClient, ClusterClient  # noqa: E402

SECTION = "7. asyncio client"
IN_FLIGHT = (1, 100, 1000)
THREADS = (1, 100)

# A contender: one round of about ``seconds``, returning (calls made, wall seconds, CPU seconds).
Round = Callable[[float], tuple[int, float, float]]


def async_round(domain: str, etcd: str, in_flight: int, connections: int) -> Round:
    """A round of ``in_flight`` tasks calling ``hello`` through one AsyncClusterClient (its
    own event loop per round; start-up and warm-up are not measured)."""

    def run(seconds: float) -> tuple[int, float, float]:
        async def main() -> tuple[int, float, float]:
            async with AsyncClusterClient(domain, etcd=etcd, connections=connections) as client:
                if not await client.wait_for_servers(10, count=1):
                    raise RuntimeError("no server in %s" % domain)
                await asyncio.gather(*(client.hello("w") for _ in range(min(in_flight, 200))))
                counts = [0] * in_flight
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds

                async def worker(index: int) -> None:
                    n = 0
                    while loop.time() < end:
                        await client.hello("w")
                        n += 1
                    counts[index] = n

                cpu, wall = time.process_time(), time.perf_counter()
                await asyncio.gather(*(worker(i) for i in range(in_flight)))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                return sum(counts), wall, cpu

        return asyncio.run(main())

    return run


def threaded_round(client: ClusterClient, threads: int) -> Round:
    """A round of ``threads`` threads calling ``hello`` through one shared ClusterClient."""

    def run(seconds: float) -> tuple[int, float, float]:
        counts = [0] * threads
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads + 1)
        box = {"end": 0.0}

        def worker(index: int) -> None:
            barrier.wait()
            end, clock, n = box["end"], time.perf_counter, 0
            try:
                while clock() < end:
                    client.hello("w")
                    n += 1
            except BaseException as error:  # reported below
                errors.append(error)
            counts[index] = n

        workers = [threading.Thread(target=worker, args=(i,), daemon=True,
                                    name="bench-aio-thread-%d" % i) for i in range(threads)]
        for thread in workers:
            thread.start()
        cpu, wall = time.process_time(), time.perf_counter()
        box["end"] = wall + seconds
        barrier.wait()
        for thread in workers:
            thread.join()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if errors:
            raise errors[0]
        return sum(counts), wall, cpu

    return run


def measure(contenders: dict[str, Round], settings: Settings) -> dict[str, tuple[float, float]]:
    """Median calls/s and median CPU microseconds per call of each contender, over alternating
    rounds after a short warm-up round each."""
    names = list(contenders)
    for name in names:
        contenders[name](min(0.2, settings.round_s))
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            calls, wall, cpu = contenders[name](settings.round_s)
            rates[name].append(calls / wall)
            cpus[name].append(cpu / max(1, calls) * 1e6)
    return {name: (median(rates[name]), median(cpus[name])) for name in names}


def ws_server_available() -> bool:
    """Whether the demo can serve hello over ws:// (the WebSocket server is another module)."""
    done = subprocess.run([sys.executable, "-m", "hprose_cluster.demo", "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    return "ws" in done.stdout.split("--transport", 1)[-1].split("\n", 1)[0] \
        or "{http,tcp,ws" in done.stdout


def aio(etcd: str, settings: Settings, **_: object) -> list[Row]:
    """The rows of this benchmark (``benchmarks/run.py`` calls this as a section)."""
    rows: list[Row] = []
    transports = ["tcp", "http"] + (["ws"] if ws_server_available() else [])
    for transport in transports:
        domain = new_domain("aio-" + transport)
        with ExitStack() as stack:
            stack.enter_context(ServerProcess(transport, domain, etcd))
            contenders: dict[str, Round] = {}
            for n in IN_FLIGHT:
                contenders["AsyncClusterClient, %d in flight" % n] = \
                    async_round(domain, etcd, n, 1 if transport != "http" else 32)
            if transport != "http":
                contenders["AsyncClusterClient, 1000 in flight, 4 connections"] = \
                    async_round(domain, etcd, 1000, 4)
            modes = {"tcp": [("half duplex", {}), ("full duplex", {"full_duplex": True})],
                     "http": [("keep-alive", {})], "ws": [("", {})]}[transport]
            for mode, options in modes:
                client = stack.enter_context(ClusterClient(domain, etcd=etcd, **options))
                if not client.discovery.wait_for_servers(10):
                    raise RuntimeError("no server in %s" % domain)
                for threads in THREADS:
                    label = "ClusterClient%s, %d thread%s" % (
                        " " + mode if mode else "", threads, "s" if threads > 1 else "")
                    contenders[label] = threaded_round(client, threads)
            results = measure(contenders, settings)
        for label, (rate, cpu_us) in results.items():
            rows.append(Row(SECTION, "%s: %s" % (transport.upper(), label),
                            "%s, %.0f us CPU/call" % (fmt_rate(rate), cpu_us),
                            detail={"rate": rate, "cpu_us_per_call": cpu_us}))
    if "ws" not in transports:
        rows.append(Row(SECTION, "WS: skipped", "no ws:// hello server in this tree yet"))
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from hprose_cluster.embedded import EmbeddedEtcd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="rounds per contender (default 9, quick 3)")
    parser.add_argument("--seconds", type=float, help="seconds per round (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    settings = Settings.make(args.quick)
    if args.rounds:
        settings.rounds = args.rounds
    if args.seconds:
        settings.round_s = args.seconds
    began = time.monotonic()
    with EmbeddedEtcd(name="bench-aio") as etcd:
        rows = aio(etcd.endpoint, settings)
    print("| measurement | calls/s, client CPU per call |")
    print("|---|---|")
    for row in rows:
        print("| %s | %s |" % (row.what, row.result))
    print("\n%s run (%d rounds of %.2g s), %.0f s in all; %d cores." % (
        "quick" if args.quick else "full", settings.rounds, settings.round_s,
        time.monotonic() - began, len(os.sched_getaffinity(0))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

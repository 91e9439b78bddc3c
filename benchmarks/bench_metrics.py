"""What metrics cost a client per call, on and off, side by side (target: under 3 us on).

1. The hooks alone: ``start()`` then ``ok(server, started, tried)`` -- what every successful
   call runs -- on the no-op recorder (metrics off) and on the real one (on), in CPU time per
   call; and, for scale, what the request wrapper adds on a server (prometheus-client metrics:
   in flight up and down, one observation, one count).
2. Whole calls: ``ClusterClient``s of one domain in this process, two made with metrics off
   (the second is the A/A control: their difference is the noise floor) and one with metrics
   on, calling the same TCP server (a subprocess, so its CPU is not counted) in alternating
   rounds; this process's CPU time per call for each.  On a shared 2-core machine the noise
   of a ~100 us call is several microseconds, so this part shows that nothing else got
   slower; the hook cost (part 1) is the number the target is checked against.

Standalone: ``python benchmarks/bench_metrics.py [--quick]`` (starts its own etcd).  As a
section of ``benchmarks/run.py``: ``metrics_cost(etcd, settings)`` returns its rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Row, ServerProcess, Settings, median, new_domain  # noqa: E402

from hprose_cluster import ClusterClient, ServerInfo, metrics  # noqa: E402

TARGET_US = 3.0


def _cpu_per_call(run: Callable[[int], None], calls: int) -> float:
    """CPU seconds of this process per call of ``run(calls)``."""
    start = time.process_time()
    run(calls)
    return (time.process_time() - start) / calls


def hook_cost(settings: Settings) -> dict[str, list[float]]:
    """Microseconds of CPU per call spent in the client's success hooks, off and on."""
    from prometheus_client import CollectorRegistry

    from hprose_cluster.metrics.names import Families

    server = ServerInfo("bench.metrics", "tcp://127.0.0.1:1")
    tried = {server.uuid}
    recorders: dict[str, Any] = {
        "off": metrics.NULL_CLIENT,
        "on": Families(CollectorRegistry()).client("bench.metrics"),
    }

    def loop(recorder: Any) -> Callable[[int], None]:
        def run(calls: int) -> None:
            start, ok = recorder.start, recorder.ok
            for _ in range(calls):
                ok(server, start(), tried)
        return run

    def empty(calls: int) -> None:  # the loop itself, subtracted from both
        for _ in range(calls):
            pass

    calls = 20000 if settings.quick else 200000
    results: dict[str, list[float]] = {name: [] for name in recorders}
    for r in range(settings.rounds):
        names = list(recorders) if r % 2 == 0 else list(recorders)[::-1]
        for name in names:
            base = _cpu_per_call(empty, calls)
            results[name].append((_cpu_per_call(loop(recorders[name]), calls) - base) * 1e6)
    return results


def server_hook_cost(settings: Settings) -> list[float]:
    """Microseconds of CPU the request wrapper adds on a server (metrics on), per request."""
    from prometheus_client import CollectorRegistry

    from hprose_cluster.metrics.names import Families
    from hprose_cluster.metrics.service import instrument
    from hprose_cluster.transport.base import encode_request

    class Service:
        _HproseService__funcNames = {"hello": "hello"}

        def _handle(self, data: bytes, context: Any) -> bytes:
            return b'Rs1"x"z'

    plain, wrapped = Service(), Service()
    instrument(wrapped, Families(CollectorRegistry()), "bench.metrics")
    request = encode_request("hello", ["w"], False, False)
    calls = 20000 if settings.quick else 200000

    def loop(service: Any) -> Callable[[int], None]:
        def run(count: int) -> None:
            handle = service._handle
            for _ in range(count):
                handle(request, None)
        return run

    results = []
    for _ in range(settings.rounds):
        results.append((_cpu_per_call(loop(wrapped), calls)
                        - _cpu_per_call(loop(plain), calls)) * 1e6)
    return results


def call_cost(etcd: str, settings: Settings) -> dict[str, list[float]]:
    """Microseconds of this process's CPU per whole call, client made with metrics off/on."""
    from prometheus_client import CollectorRegistry

    domain = new_domain("metrics")
    calls = 300 if settings.quick else 3000
    with ExitStack() as stack:
        stack.enter_context(ServerProcess("tcp", domain, etcd))
        clients: dict[str, ClusterClient] = {}
        previous = metrics.current_registry()
        try:
            metrics.disable()
            clients["off"] = stack.enter_context(ClusterClient(domain, etcd=etcd))
            clients["off (A/A)"] = stack.enter_context(ClusterClient(domain, etcd=etcd))
            metrics.enable(CollectorRegistry())
            clients["on"] = stack.enter_context(ClusterClient(domain, etcd=etcd))
        finally:
            metrics.enable(previous) if previous is not None else metrics.disable()
        for client in clients.values():
            if not client.discovery.wait_for_servers(10):
                raise RuntimeError("the client never saw its server in %s" % domain)
            for _ in range(200):  # warm-up: connections, caches, labelled children
                client.hello("w")

        def loop(client: ClusterClient) -> Callable[[int], None]:
            def run(count: int) -> None:
                for _ in range(count):
                    client.hello("w")
            return run

        results: dict[str, list[float]] = {name: [] for name in clients}
        for r in range(settings.rounds):
            names = list(clients) if r % 2 == 0 else list(clients)[::-1]
            for name in names:
                results[name].append(_cpu_per_call(loop(clients[name]), calls) * 1e6)
    return results


def metrics_cost(etcd: str, settings: Settings, **_: object) -> list[Row]:
    """The rows for benchmarks/run.py (section "metrics cost")."""
    hooks = hook_cost(settings)
    server = server_hook_cost(settings)
    whole = call_cost(etcd, settings)
    on, off = median(hooks["on"]), median(hooks["off"])
    call_on, call_off = median(whole["on"]), median(whole["off"])
    call_control = median(whole["off (A/A)"])
    section = "metrics cost"
    return [
        Row(section, "client hooks per call, metrics off", "%.2f us CPU" % off, detail=hooks),
        Row(section, "client hooks per call, metrics on", "%.2f us CPU" % on,
            "< %g us" % TARGET_US, on < TARGET_US, detail=hooks),
        Row(section, "server request wrapper, metrics on", "%.2f us CPU" % median(server),
            detail={"server": server}),
        Row(section, "whole TCP call, client CPU, metrics off", "%.1f us" % call_off, detail=whole),
        Row(section, "whole TCP call, client CPU, off again (A/A)", "%.1f us (%+.1f us)"
            % (call_control, call_control - call_off), detail=whole),
        Row(section, "whole TCP call, client CPU, metrics on", "%.1f us (%+.1f us)"
            % (call_on, call_on - call_off), detail=whole),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    from hprose_cluster.embedded import EmbeddedEtcd

    settings = Settings.make(args.quick)
    with EmbeddedEtcd(name="bench-metrics") as etcd:
        rows = metrics_cost(etcd.endpoint, settings)
    print("%-47s %-24s %-10s %s" % ("what", "result", "target", "met"))
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print("%-47s %-24s %-10s %s" % (row.what, row.result, row.target, met))
    hooks, whole = rows[0].detail, rows[3].detail
    print("\nper round (us CPU per call):")
    for name, values in hooks.items():
        print("  hooks %-10s %s" % (name + ":", " ".join("%.2f" % v for v in values)))
    print("  server on:        %s" % " ".join("%.2f" % v for v in rows[2].detail["server"]))
    for name, values in whole.items():
        print("  call %-11s %s" % (name + ":", " ".join("%.1f" % v for v in values)))
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""4. Failover under load: SIGKILL the primary while 8 threads call through a ClusterClient.

Three hello servers run as subprocesses (TCP, TTL 2 s, heartbeat 0.5 s).  The client marks
calls idempotent, so a call whose server died mid-reply may go to another server.  Each call
is timed; the primary is killed half-way.  Reported: failed calls, the slowest call, and calls
per second before the kill, right after it (the TTL window, while the dead server is still
registered) and once etcd has dropped it.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

from common import Row, ServerProcess, Settings, fmt_ms, fmt_rate, new_domain

from hprose_cluster import ClusterClient

THREADS = 8
TTL = 2


def failover(etcd: str, settings: Settings, **_: object) -> list[Row]:
    before_s, after_s = (1.5, 4.0) if settings.quick else (4.0, 8.0)
    domain = new_domain("failover")
    with ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess("tcp", domain, etcd, ttl=TTL,
                                                     heartbeat=0.5)) for _ in range(3)]
        client = stack.enter_context(ClusterClient(domain, etcd=etcd, idempotent=True))
        if not client.discovery.wait_for_servers(10, 3):
            raise RuntimeError("the client never saw the 3 servers")
        calls: list[list[tuple[float, float]]] = [[] for _ in range(THREADS)]
        failures: list[tuple[float, BaseException]] = []
        stop = threading.Event()

        def worker(index: int) -> None:
            mine = calls[index]
            clock = time.perf_counter
            while not stop.is_set():
                began = clock()
                try:
                    client.hello("w")
                except Exception as error:  # counted: the target is zero
                    failures.append((clock(), error))
                    continue
                mine.append((began, clock()))

        workers = [threading.Thread(target=worker, args=(i,), daemon=True,
                                    name="bench-failover-%d" % i) for i in range(THREADS)]
        started = time.perf_counter()
        for thread in workers:
            thread.start()
        time.sleep(before_s)
        primary = client.primary
        victim = next(s for s in servers if primary is not None and s.url == primary.url)
        killed = time.perf_counter()
        victim.kill()
        gone = client.discovery.wait_for(lambda view: primary.uuid not in view, TTL + 3)
        left = time.perf_counter()
        time.sleep(max(0.0, killed + after_s - time.perf_counter()))
        stop.set()
        for thread in workers:
            thread.join(10)
        ended = time.perf_counter()

    done = [c for mine in calls for c in mine]
    warm = started + 0.3

    def rate(start: float, end: float) -> float:
        return sum(1 for _, e in done if start <= e < end) / max(1e-9, end - start)

    across = [e - b for b, e in done if b <= killed + 1.0 and e >= killed]
    slowest_across = max(across) if across else 0.0
    slowest = max(e - b for b, e in done)
    new_primary = client.primary.url if client.primary else "none"
    return [
        Row("4. failover", "failed calls (8 threads, primary SIGKILLed, %d calls in all)"
            % len(done), "%d" % len(failures), "0", not failures,
            {"errors": [repr(e) for _, e in failures[:5]]}),
        Row("4. failover", "slowest call started within 1 s of the kill",
            "%s (slowest of the run: %s)" % (fmt_ms(slowest_across), fmt_ms(slowest)), "", None),
        Row("4. failover", "calls/s before the kill / first 1 s after / after etcd dropped it",
            "%s / %s / %s" % (fmt_rate(rate(warm, killed)), fmt_rate(rate(killed, killed + 1.0)),
                              fmt_rate(rate(left, ended))), "", None),
        Row("4. failover", "dead server left the client's view after",
            "%s (TTL %d s)%s; new primary %s" % (fmt_ms(left - killed), TTL,
                                                 "" if gone else " - never", new_primary),
            "", None),
    ]

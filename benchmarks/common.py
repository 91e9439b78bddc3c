"""Shared helpers for the benchmarks: servers in subprocesses, interleaved rate rounds, tables.

The machine these run on is small and shared, so no number is taken alone: contenders are
measured side by side in short alternating rounds (the order flips every round to cancel
drift) and the medians are compared.  Everything listens on loopback; everything started here
is stopped by the caller's ``with`` blocks or ``ExitStack``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Settings:
    """How long each part runs: ``quick`` is a smoke run (well under a minute in all)."""

    quick: bool
    rounds: int
    round_s: float
    events: int

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        if quick:
            return cls(quick=True, rounds=3, round_s=0.25, events=50)
        return cls(quick=False, rounds=9, round_s=1.0, events=200)


@dataclass
class Row:
    """One line of the results table."""

    section: str
    what: str
    result: str
    target: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def new_domain(tag: str) -> str:
    return "bench.%s.%s" % (tag, uuid.uuid4().hex[:8])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(round(p / 100.0 * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


# --- servers -----------------------------------------------------------------------------------

class ServerProcess:
    """``python -m hprose_cluster.demo serve`` in a subprocess; ``url`` and ``pid`` from READY."""

    def __init__(self, transport: str, domain: str, etcd: str, *, ttl: int = 2,
                 heartbeat: float = 0.5, timeout: float = 20.0):
        command = [sys.executable, "-m", "hprose_cluster.demo", "serve", "--transport", transport,
                   "--domain", domain, "--etcd", etcd, "--ttl", str(ttl),
                   "--heartbeat", str(heartbeat)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=REPO, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),
                                  daemon=True, name="bench-ready-reader")
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("READY "):
            self.close()
            raise RuntimeError("server did not start: %r" % (line,))
        _, self.url, pid = line[0].split()
        self.pid = int(pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- rates -------------------------------------------------------------------------------------

def run_rate(call: Callable[[], Any], threads: int, seconds: float) -> float:
    """Calls per second of ``call`` from ``threads`` threads for about ``seconds``."""
    counts = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    box = {"end": 0.0}

    def worker(index: int) -> None:
        barrier.wait()
        end = box["end"]
        clock = time.perf_counter
        n = 0
        try:
            while clock() < end:
                call()
                n += 1
        except BaseException as error:  # reported below, never swallowed
            errors.append(error)
        counts[index] = n

    workers = [threading.Thread(target=worker, args=(i,), daemon=True, name="bench-worker-%d" % i)
               for i in range(threads)]
    for thread in workers:
        thread.start()
    start = time.perf_counter()
    box["end"] = start + seconds
    barrier.wait()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def interleaved(contenders: dict[str, Callable[[], Any]], threads: int,
                settings: Settings) -> dict[str, list[float]]:
    """Rates of each contender over ``settings.rounds`` alternating rounds (after a warm-up)."""
    names = list(contenders)
    for name in names:
        run_rate(contenders[name], threads, min(0.2, settings.round_s))
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            rates[name].append(run_rate(contenders[name], threads, settings.round_s))
    return rates


def ratio(rates: dict[str, list[float]], num: str, den: str) -> tuple[float, float]:
    """(ratio of medians, median of per-round ratios) of contender ``num`` over ``den``."""
    of_medians = median(rates[num]) / median(rates[den])
    paired = median([a / b for a, b in zip(rates[num], rates[den])])
    return of_medians, paired


# --- etcd metrics --------------------------------------------------------------------------------

def etcd_metrics(client_url: str) -> dict[str, float]:
    """etcd's ``grpc_server_handled_total`` and ``grpc_server_msg_received_total`` per method,
    and its CPU seconds and WAL syncs (count and seconds) so far."""
    import urllib.request

    with urllib.request.urlopen(client_url + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("process_cpu_seconds_total ",
                            "etcd_disk_wal_fsync_duration_seconds_count ",
                            "etcd_disk_wal_fsync_duration_seconds_sum ")):
            name, value = line.split(" ", 1)
            totals[name] = float(value)
            continue
        for family in ("grpc_server_handled_total", "grpc_server_msg_received_total"):
            if line.startswith(family + "{"):
                labels, value = line[len(family) + 1:].rsplit("} ", 1)
                parts = dict(item.split("=", 1) for item in labels.split(","))
                key = "%s:%s" % (family, parts.get("grpc_method", "").strip('"'))
                totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_count() -> int:
    return threading.active_count()


def fmt_rate(value: float) -> str:
    return "{:,.0f}/s".format(value)


def fmt_ms(seconds: float) -> str:
    return "%.2f ms" % (seconds * 1000.0)

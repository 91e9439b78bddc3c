"""8. A domain of 100,000 servers; 9. ``hprose-cluster watch`` through a fleet's rolling restart.

8. 100,000 records (9,999... all pointing at loopback addresses where nothing listens) are put
   straight into etcd, 100 to a transaction, on one lease.  Then:

   * start-up: ``ClusterClient(domain)`` in a fresh ``python`` process each time (what a
     restarted client pays, first allocations included): wall time and CPU time of the
     constructor, RSS the client added, median of three; and once more in a process with
     ``tracemalloc`` on, for the bytes Python allocated and kept;
   * ``pick()`` for each selector over the 1-server view and the 100,000-server one;
   * one registration made in the big domain -> a ``Discovery`` listener of it is told
     (the view is rebuilt per change; this is what each change costs a client of such a domain).

9. 1,000 domains of 10 servers each are put into etcd; ``python -m hprose_cluster watch`` (no
   domain: every domain) runs in a subprocess and prints its ``present`` lines.  Then a
   rolling restart of all of them, every domain at once, one server per domain at a time:
   each step deletes one record of every domain (a server leaving) and puts its replacement
   under a new UUID (the restarted server joining), one write per event, from 8 threads, as
   fast as etcd takes them.  Each line the watch prints is timestamped as it arrives on the
   pipe, by a separate process (so the writer threads here cannot delay the stamp); an
   event's latency runs from the moment its write was issued.  Target: every one of
   the 20,000 events printed within 1 s.

Everything is on loopback and bounded: fixed record counts, deadlines on every wait.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from common import REPO, Row, Settings, fmt_ms, new_domain, percentile

RECORD = '{"UUID":"%s","Domain":"%s","ServerUrl":"%s","CPU":1}'


def _url(i: int) -> str:
    return "tcp://127.%d.%d.%d:9" % (i // 62500 % 250, i // 250 % 250, i % 250 + 1)


def _put_raw(connection: Any, items: list[tuple[str, str]], lease: int,
             batch: int = 100) -> None:
    """Put ``(key, value)`` pairs in transactions of ``batch`` on ``lease``."""
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]

        def txn(client: Any, chunk: list[tuple[str, str]] = chunk) -> Any:
            puts = [client.transactions.put(key, value, lease=lease) for key, value in chunk]
            return client.transaction(compare=[], success=puts, failure=[])

        connection.call("putting %d records" % len(chunk), txn)


def _records(prefix: str, domain: str, count: int, first: int = 0) -> list[tuple[str, str]]:
    out = []
    for i in range(first, first + count):
        server = str(uuid.uuid4())
        out.append(("%s/%s/%s" % (prefix, domain, server), RECORD % (server, domain, _url(i))))
    return out


# --- 8. a big domain ---------------------------------------------------------------------------

PROBE = r"""
import gc, json, os, sys, time
traced = sys.argv[3] == "traced"
from hprose_cluster import ClusterClient
from hprose_cluster import etcd as etcd_module
in_etcd = [0.0]
connection_class = getattr(etcd_module, "EtcdConnection", None)
if connection_class is not None and hasattr(connection_class, "call"):
    plain_call = connection_class.call
    def timed_call(self, what, func):  # wall time spent waiting for etcd's replies
        began = time.perf_counter()
        try:
            return plain_call(self, what, func)
        finally:
            in_etcd[0] += time.perf_counter() - began
    connection_class.call = timed_call
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if traced:
    import tracemalloc
    tracemalloc.start()
gc.collect()
rss0, cpu0, wall0 = rss(), time.process_time(), time.perf_counter()
traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
client = ClusterClient(sys.argv[1], etcd=sys.argv[2])
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
gc.collect()
out = {"wall": wall, "cpu": cpu, "rss": rss() - rss0, "servers": len(client.servers()),
       "etcd": in_etcd[0]}
if traced:
    out["traced"] = tracemalloc.get_traced_memory()[0] - traced0
client.close()
print(json.dumps(out))
"""


def _probe(domain: str, etcd: str, traced: bool = False) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", PROBE, domain, etcd,
                           "traced" if traced else "plain"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    if done.returncode != 0:
        raise RuntimeError("the start-up probe failed: %s" % done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def big_domain(etcd: str, settings: Settings, **_: object) -> list[Row]:
    from hprose_cluster import ClusterClient, Discovery, ServerInfo
    from hprose_cluster.etcd import EtcdConfig, EtcdConnection
    from hprose_cluster.failover import Ejector
    from hprose_cluster.selector import make_selector

    size = 20_000 if settings.quick else 100_000
    rows: list[Row] = []
    # revoking the lease of 100,000 keys takes etcd seconds on a busy machine
    config = EtcdConfig(endpoints=etcd, timeout=60)
    big, small = new_domain("size%d" % size), new_domain("size1")
    with ExitStack() as stack:
        connection = stack.enter_context(EtcdConnection(config))
        lease = connection.grant(900)
        stack.callback(connection.revoke, lease)
        items = _records(config.prefix, big, size)
        sample = ServerInfo(big, _url(0), uuid=items[0][0].rsplit("/", 1)[1], cpu=1)
        assert sample.to_json().decode() == items[0][1], "the raw record is not what we write"
        began = time.perf_counter()
        _put_raw(connection, items, lease)
        _put_raw(connection, _records(config.prefix, small, 1), lease)
        put_s = time.perf_counter() - began

        probes = [_probe(big, etcd) for _ in range(3)]
        for probe in probes:
            if probe["servers"] != size:
                raise RuntimeError("the client read %d of %d servers" % (probe["servers"], size))
        traced = _probe(big, etcd, traced=True)
        wall = statistics.median(p["wall"] for p in probes)
        cpu = statistics.median(p["cpu"] for p in probes)
        rss = statistics.median(p["rss"] for p in probes)
        rows.append(Row("8. big domain", "start-up of a ClusterClient, %d servers (fresh process)"
                        % size,
                        "%.2f s wall, of it %.2f s waiting for etcd's replies; %.2f s CPU "
                        "(runs %s; load average %.1f; %d records put in %.1f s)" % (
                            wall, statistics.median(p["etcd"] for p in probes), cpu,
                            ", ".join("%.2f s" % p["wall"] for p in probes),
                            os.getloadavg()[0], size, put_s),
                        "< 2 s", wall < 2.0, {"probes": probes}))
        rows.append(Row("8. big domain", "memory a %d-server client adds" % size,
                        "%.1f MB RSS (median of 3), %.1f MB traced by tracemalloc"
                        % (rss / 2**20, traced["traced"] / 2**20),
                        "< 100 MB", max(rss, traced["traced"]) < 100 * 2**20, {"traced": traced}))

        one = stack.enter_context(ClusterClient(small, etcd=etcd))
        many = stack.enter_context(ClusterClient(big, etcd=etcd))
        one.discovery.wait_for_servers(10)
        ejector = Ejector()
        for name in ("random", "round-robin", "weighted"):
            costs = []
            for view in (one.discovery.view, many.discovery.view):
                selector = make_selector(name)
                selector.pick(view, (), ejector)
                number = 20_000 if settings.quick else 100_000
                # CPU time of this thread: on a loaded machine wall time mostly measures waits
                best = min(timeit.repeat(lambda: selector.pick(view, (), ejector),
                                         number=number, repeat=5, timer=time.thread_time))
                costs.append(best / number * 1e6)
            rows.append(Row("8. big domain", "one %s pick(), 1 vs %d servers (CPU)"
                            % (name, size), "%.2f us vs %.2f us (%.2fx)"
                            % (costs[0], costs[1], costs[1] / costs[0]),
                            "unchanged", costs[1] <= 1.25 * costs[0]))
        many.close()
        rows.append(_change_cost(config, connection, big, size, lease, stack, Discovery,
                                 settings))
        one.close()
    return rows


def _change_cost(config: Any, connection: Any, domain: str, size: int, lease: int,
                 stack: ExitStack, discovery_class: Any, settings: Settings) -> Row:
    """Registrations into the big domain, one at a time, until a listener is told."""
    seen: dict[str, float] = {}
    changed = threading.Condition()

    def listener(added: list[Any], removed: list[Any]) -> None:
        now = time.perf_counter()
        with changed:
            for info in added:
                seen[info.uuid] = now
            changed.notify_all()

    discovery = stack.enter_context(discovery_class(domain, etcd=config))
    discovery.add_listener(listener)
    samples = []
    for i in range(5 if settings.quick else 20):
        key, value = _records(config.prefix, domain, 1, first=size + i)[0]
        server = key.rsplit("/", 1)[1]
        began = time.perf_counter()
        connection.put(key, value.encode(), lease)
        with changed:
            if not changed.wait_for(lambda: server in seen, 30):
                raise RuntimeError("a registration in the %d-server domain was never seen"
                                   % size)
        samples.append(seen[server] - began)
    discovery.close()
    return Row("8. big domain", "one registration in the %d-server domain -> a listener is "
                                "told (%d events)" % (size, len(samples)),
               "p50 %s, max %s" % (fmt_ms(percentile(samples, 50)), fmt_ms(max(samples))),
               "", None, {"samples": samples})


# --- 9. the watch command through a rolling restart --------------------------------------------

STAMPER = r"""
import sys, time
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    out.write(b"%.6f %s" % (time.perf_counter(), line))
    out.flush()
"""


class _WatchProcess:
    """``python -m hprose_cluster watch`` piped into a second process that prefixes every line
    with ``time.perf_counter()`` (CLOCK_MONOTONIC, the same clock in every process) as it
    arrives, into a file.  The stamp is taken outside this process, whose writer threads
    would otherwise delay a reader thread here by holding the GIL."""

    def __init__(self, etcd: str, path: str):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.path = path
        self.out = open(path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "hprose_cluster", "watch",
                                      "--etcd", etcd], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=REPO, env=env)
        self.stamper = subprocess.Popen([sys.executable, "-c", STAMPER], stdin=self.proc.stdout,
                                        stdout=self.out, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.proc.stdout.close()  # the stamper holds the read end now
        self.seen: dict[tuple[str, str], float] = {}
        self._offset = 0

    def _read_new(self) -> None:
        with open(self.path, "rb") as stamped:
            stamped.seek(self._offset)
            data = stamped.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += end
        for raw in data[:end].splitlines():
            fields = raw.split()
            if len(fields) >= 6:  # stamp, time, event, domain, uuid, url
                self.seen[(fields[2].decode(), fields[4].decode())] = float(fields[0])

    def wait(self, keys: list[tuple[str, str]], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._read_new()
            if all(k in self.seen for k in keys):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def cpu(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        for proc in (self.proc, self.stamper):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.out.close()


def watch_rolling(etcd: str, settings: Settings, **_: object) -> list[Row]:
    from hprose_cluster.etcd import EtcdConfig, EtcdConnection

    domains, per_domain = (200, 10) if settings.quick else (1000, 10)
    config = EtcdConfig(endpoints=etcd, timeout=60)
    tag = new_domain("roll")  # bench.roll.<hex>: every domain of this run starts with it
    names = ["%s.d%04d" % (tag, d) for d in range(domains)]
    rows: list[Row] = []
    with ExitStack() as stack:
        connection = stack.enter_context(EtcdConnection(config))
        lease = connection.grant(900)
        stack.callback(connection.revoke, lease)
        current: list[list[tuple[str, str]]] = [
            _records(config.prefix, name, per_domain, first=d * per_domain)
            for d, name in enumerate(names)]
        _put_raw(connection, [item for group in current for item in group], lease)

        began = time.perf_counter()
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-watch-"))
        watch = _WatchProcess(etcd, os.path.join(folder, "watch.out"))
        stack.callback(watch.close)
        present = [("present", key.rsplit("/", 1)[1]) for group in current for key, _ in group]
        if not watch.wait(present, 120):
            raise RuntimeError("the watch command never listed the %d servers" % len(present))
        listed_s = time.perf_counter() - began

        issued: dict[tuple[str, str], float] = {}
        lock = threading.Lock()

        def restart(d: int, slot: int) -> None:
            old_key, _ = current[d][slot]
            new_key, new_value = _records(config.prefix, names[d], 1, first=d * per_domain)[0]
            old, new = old_key.rsplit("/", 1)[1], new_key.rsplit("/", 1)[1]
            with lock:
                issued[("left", old)] = time.perf_counter()
            connection.delete(old_key)
            with lock:
                issued[("joined", new)] = time.perf_counter()
            connection.put(new_key, new_value.encode(), lease)
            current[d][slot] = (new_key, new_value)

        cpu_before = watch.cpu()
        started = time.perf_counter()
        with ThreadPoolExecutor(8, thread_name_prefix="bench-roll") as pool:
            for slot in range(per_domain):  # one server of every domain per step
                list(pool.map(lambda d: restart(d, slot), range(domains)))
        written_s = time.perf_counter() - started
        complete = watch.wait(list(issued), 60)
        watch_cpu = watch.cpu() - cpu_before
        elapsed = time.perf_counter() - started
        latencies = [watch.seen[k] - t for k, t in issued.items() if k in watch.seen]
        missing = len(issued) - len(latencies)
        worst = max(latencies) if latencies else float("nan")
        rows.append(Row("9. watch", "hprose-cluster watch: initial list of %d domains x %d "
                                    "servers" % (domains, per_domain),
                        "%.2f s to print all %d present lines" % (listed_s, len(present)),
                        "", None))
        rows.append(Row("9. watch", "rolling restart of all %d servers (%d events, written at "
                                    "%.0f/s) -> printed by hprose-cluster watch"
                        % (domains * per_domain, len(issued), len(issued) / written_s),
                        "p50 %s, p99 %s, max %s; %d missing; watch CPU %.0f%% of a core"
                        % (fmt_ms(percentile(latencies, 50)), fmt_ms(percentile(latencies, 99)),
                           fmt_ms(worst), missing, 100 * watch_cpu / elapsed),
                        "every event within 1 s", complete and missing == 0 and worst < 1.0,
                        {"latencies": latencies}))
        connection.call("deleting the rolling-restart domains",
                        lambda client: client.delete_prefix("%s/%s." % (config.prefix, tag)))
    gc.collect()
    return rows

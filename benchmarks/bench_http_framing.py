"""Server CPU per HTTP request: the hand-written HTTP/1.1 parsing against h11.

    python benchmarks/bench_http_framing.py [--calls 3000] [--rounds 5]

The h11 contender is ``benchmarks/h11_candidate.py``.  Each round starts one HttpServer in a subprocess with either request parser, drives ``calls``
keep-alive calls of ``hello`` (1 thread, and 8 threads) from this process, and reads the
server process's CPU time (user + system, from /proc) before and after.  Rounds alternate the
two parsers; the median microseconds of server CPU per call are printed, and the payload
variant (a 64 KiB argument) shows the body path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hprose_cluster.transport.http import HttpClient  # noqa: E402

SERVER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from hprose_cluster.transport.http import HttpServer
server = HttpServer("127.0.0.1", 0)
if sys.argv[1] == "h11":
    from h11_candidate import H11Protocol
    handler = H11Protocol(server)
    handler.serving = server._serving
    server._serving.handler = handler
server.addFunction(lambda name: "Hello " + name, "hello")
server.start(block=False)
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(parser: str, calls: int, threads: int, arg: str) -> float:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, parser, os.path.join(REPO, "benchmarks")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        url = proc.stdout.readline().strip()
        with HttpClient(url, timeout=10) as client:
            client.hello("warm")
            time.sleep(0.2)
            before = cpu_seconds(proc.pid)
            per_thread = calls // threads

            def work() -> None:
                for _ in range(per_thread):
                    client.hello(arg)

            workers = [threading.Thread(target=work) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            after = cpu_seconds(proc.pid)
        return (after - before) / (per_thread * threads) * 1e6
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    print("| request parser | case | server CPU per call (median of %d rounds) |" % options.rounds)
    print("|---|---|---:|")
    for case, threads, arg in (("hello, 1 thread", 1, "x"), ("hello, 8 threads", 8, "x"),
                               ("64 KiB argument, 1 thread", 1, "x" * 65536)):
        results: dict[str, list[float]] = {"hand-written": [], "h11": []}
        for n in range(options.rounds):
            order = ("hand", "h11") if n % 2 == 0 else ("h11", "hand")
            for name in order:
                key = "hand-written" if name == "hand" else "h11"
                calls = options.calls if arg == "x" else max(200, options.calls // 10)
                results[key].append(one_round(name, calls, threads, arg))
        for key, values in results.items():
            print("| %s | %s | %.1f us |" % (key, case, statistics.median(values)))


if __name__ == "__main__":
    main()

"""7. CPU per call: what one small call costs each side, beside a bare socket exchange.

    python benchmarks/bench_cpu.py                 # the table alone, about a minute
    python benchmarks/bench_cpu.py --quick         # a smoke run
    python benchmarks/bench_cpu.py --paths floor,tcp-half --cycles 20 --json cpu.json
    python benchmarks/bench_cpu.py --paths floor,tcp-half --baseline /tmp/before  # A/B

``--baseline DIR`` also runs every chosen path of ours (not the floor, not hprose 1.4.3) on
the hprose_cluster found in DIR (an export of an earlier commit: ``git archive REV | tar -x -C
DIR``), as ``base:PATH``, in the same cycles: the before and after of a change from one run.

Throughput on a small shared machine swings as much as its own A/A control; the CPU time each
process accounts to itself does not, and it says which side the cost is on.  Every path below
calls ``hello("w")`` from one thread, in its own client process, against its own server
process, and each round reports three figures per call:

* client CPU: ``time.process_time()`` of the client process (all its threads), taken in it;
* server CPU: utime + stime of the server process from ``/proc/PID/stat``, read around the
  round (10 ms ticks; a round runs long enough for dozens of them);
* wall: the client's ``time.perf_counter()``, i.e. the latency of one call.

Paths:

* ``floor``: a bare Python socket client and server (written here, no hprose code) exchanging
  the same pre-encoded hprose TCP frames, the client sending the request frame and reading the
  reply frame, the server parsing the frame header and answering the canned reply.  No
  transport can do less than this in Python; ratios are against it.
* ``tcp-half``: ``TcpClient`` -> ``TcpServer``, half duplex (the default).
* ``tcp-full``: ``TcpClient(full_duplex=True)`` -> the same ``TcpServer``, one thread calling.
* ``http``: our ``HttpClient`` -> our ``HttpServer``.
* ``hprose``: hprose 1.4.3's ``HttpClient`` -> hprose 1.4.3's ``HttpServer`` (its service in
  wsgiref, as ``HproseHttpServer.start()`` does), in processes that never import
  ``hprose_cluster``, so no compat patch touches them.

The paths run in cycles, each path for a short slice per cycle (the order flips every cycle),
so that all of them see the same drift of a shared machine's load.  Server CPU per slice is
read to the nanosecond from ``/proc/PID/task/*/schedstat`` (the runtime utime + stime are
scaled from; ticks of 10 ms are too coarse for a slice), and the whole run's utime + stime from
``/proc/PID/stat`` is printed beside it as a check.  On these machines other tenants inflate
the CPU time of a slice by up to 4x (the hypervisor's steal is printed): interference only
ever adds, so each figure is the 10th percentile over slices (the quiet ones; steady within
about 10 % from run to run), with the median in brackets.  Slices are bounded by time and by a
call cap.  A path whose transport cannot be imported or started is reported as such, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The frames of hello("w") as every hprose peer writes them: half-duplex TCP framing (a
# big-endian length word, then the body).  Checked against our encoder in ``check_frames``.
REQUEST_BODY = b'Cs5"hello"a1{uw}z'
REPLY_BODY = b'Rs7"Hello w"z'
REQUEST_FRAME = len(REQUEST_BODY).to_bytes(4, "big") + REQUEST_BODY
REPLY_FRAME = len(REPLY_BODY).to_bytes(4, "big") + REPLY_BODY

PATHS = {
    # name: (server kind, label)
    "floor": ("floor", "bare socket client -> bare socket server (the floor)"),
    "tcp-half": ("tcp", "TcpClient -> TcpServer, half duplex"),
    "tcp-full": ("tcp", "TcpClient -> TcpServer, full duplex, 1 thread"),
    "http": ("http", "HttpClient -> HttpServer"),
    "hprose": ("hprose", "hprose 1.4.3 HttpClient -> hprose 1.4.3 HttpServer"),
    # diagnostics, only with --paths: the floor client with a socket timeout set once (every
    # send and recv then polls first, as CPython does for a socket in timeout mode), and with
    # settimeout() called before each send and each recv (what TcpClient does)
    "floor-timeout": ("floor", "bare socket client with a socket timeout -> bare server"),
    "floor-settimeout": ("floor", "bare socket client calling settimeout() twice a call"),
}
DEFAULT_PATHS = ["floor", "tcp-half", "tcp-full", "http", "hprose"]
MAX_CALLS_PER_ROUND = 200_000
DEFAULT_CYCLES = 60
DEFAULT_SLICE = 0.15
LAST_TABLE = ""  # the detailed table of the last cpu_per_call(), for run.py to print
_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def hello(name: str) -> str:
    return "Hello " + name


# --- server processes (python bench_cpu.py --serve KIND) -----------------------------------------

def _floor_connection(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                end = 4 + (int.from_bytes(buf[:4], "big") & 0x7FFFFFFF)
                if len(buf) < end:
                    break
                buf = buf[end:]
                conn.sendall(REPLY_FRAME)


def _serve_floor() -> tuple[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_floor_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "floor://127.0.0.1:%d" % listener.getsockname()[1], listener.close


def _serve_hprose() -> tuple[str, Any]:
    """hprose 1.4.3's HproseHttpServer.start(), but on a free port and on a thread."""
    from wsgiref.simple_server import make_server

    import hprose

    service = hprose.HttpService()
    service.addFunction(hello)
    httpd = make_server("127.0.0.1", 0, service)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/" % httpd.server_address[1], httpd.shutdown


def _serve_ours(kind: str) -> tuple[str, Any]:
    if kind == "tcp":
        from hprose_cluster.transport.tcp import TcpServer as server_class
    else:
        from hprose_cluster.transport.http import HttpServer as server_class  # type: ignore
    server = server_class("127.0.0.1", 0)
    add = getattr(server, "addFunction", None) or server.add
    add(hello)
    server.start(block=False)
    url = getattr(server, "url", None)
    if not url:
        host, port = server.address[:2]
        url = "%s://%s:%d/" % (kind, host, port)
    return url, lambda: server.stop(drain_timeout=2)


def serve(kind: str) -> None:
    url, stop = {"floor": _serve_floor, "hprose": _serve_hprose}.get(
        kind, lambda: _serve_ours(kind))()
    print("READY %s %d" % (url, os.getpid()), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    stop()


# --- client processes (python bench_cpu.py --client PATH URL) ------------------------------------

class _FloorClient:
    def __init__(self, url: str, timeout: float | None = None, settimeout: bool = False):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.settimeout = settimeout

    def hello(self, _name: str) -> bytes:
        sock = self.sock
        if self.settimeout:
            sock.settimeout(30.0)
        sock.sendall(REQUEST_FRAME)
        if self.settimeout:
            sock.settimeout(29.0)
        reply = sock.recv(65536)
        while len(reply) < len(REPLY_FRAME):
            more = sock.recv(65536)
            if not more:
                raise EOFError("the floor server closed the connection")
            reply += more
        return reply

    def close(self) -> None:
        self.sock.close()


def _make_client(path: str, url: str) -> tuple[Any, Any]:
    """The client of ``path`` and the reply its hello("w") must give."""
    if path == "floor":
        return _FloorClient(url), REPLY_FRAME
    if path == "floor-timeout":
        return _FloorClient(url, timeout=30.0), REPLY_FRAME
    if path == "floor-settimeout":
        return _FloorClient(url, settimeout=True), REPLY_FRAME
    if path == "hprose":
        import hprose

        return hprose.HttpClient(url), "Hello w"
    if path.startswith("tcp"):
        from hprose_cluster.transport.tcp import TcpClient

        if path == "tcp-full":
            return TcpClient(url, full_duplex=True), "Hello w"
        return TcpClient(url), "Hello w"
    from hprose_cluster.transport.http import HttpClient

    return HttpClient(url), "Hello w"


def client(path: str, url: str) -> None:
    """Answer ``run SECONDS MAXCALLS`` lines with ``calls cpu_s wall_s`` until stdin closes."""
    try:
        made, expected = _make_client(path, url)
        got = made.hello("w")
        if got != expected:
            raise RuntimeError("hello('w') answered %r, not %r" % (got, expected))
    except Exception as error:  # reported to the coordinator, which skips this path
        print("ERROR %s: %s" % (type(error).__name__, str(error).replace("\n", " ")), flush=True)
        return
    print("READY", flush=True)
    call = made.hello
    for line in sys.stdin:
        seconds, cap = line.split()[1:3]
        budget, limit = float(seconds), int(cap)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        end = wall0 + budget
        calls = 0
        while calls < limit:
            for _ in range(16):
                call("w")
            calls += 16
            if time.perf_counter() >= end:
                break
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        print("%d %.9f %.9f" % (calls, cpu, wall), flush=True)
    if path != "hprose":  # there close() would be a remote call
        made.close()


# --- the coordinator ---------------------------------------------------------------------------

def process_cpu(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds (10 ms ticks)."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK  # fields 14 and 15 of stat(5)


def process_runtime(pid: int) -> float:
    """The same CPU time to the nanosecond: the sum of ``/proc/PID/task/*/schedstat``.

    utime + stime are this runtime scaled into ticks; too coarse for a slice of a tenth of a
    second.  Only threads alive at the reading count, which is fine for servers whose threads
    (one per kept-alive connection, a worker pool) live as long as the benchmark.
    """
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just exited
    return total / 1e9


def machine_steal() -> tuple[int, int]:
    """(steal, all) jiffies of the machine, from the ``cpu`` line of /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return values[7], sum(values[:8])


BASELINE = "base:"  # a path run on the tree given with --baseline
_baseline_dir: str | None = None


def _info(path: str) -> tuple[str, str]:
    """(server kind, label) of a path, ``base:`` paths included."""
    if path.startswith(BASELINE):
        kind, label = PATHS[path[len(BASELINE):]]
        return BASELINE + kind, label + " [baseline]"
    return PATHS[path]


def _env(tree: str = REPO) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))


class _Child:
    """A ``--serve`` or ``--client`` subprocess spoken to by lines on stdin/stdout; with
    ``tree`` it imports hprose_cluster from there."""

    def __init__(self, args: list[str], timeout: float = 30.0, tree: str = REPO):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + args,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                                     env=_env(tree))
        self.first = self.readline(timeout)

    def readline(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise RuntimeError("%s did not answer within %.0f s" % (self.proc.args[2:], timeout))
        return box[0].strip()

    def ask(self, line: str, timeout: float) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.readline(timeout)

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def check_frames() -> None:
    """The floor's canned request is the bytes our encoder produces."""
    sys.path.insert(0, REPO)
    from hprose_cluster.transport.base import encode_request

    encoded = encode_request("hello", ["w"], False, False)
    if encoded != REQUEST_BODY:
        raise RuntimeError("the floor's request %r is not what we encode: %r"
                           % (REQUEST_BODY, encoded))


def measure(paths: list[str], cycles: int, slice_s: float, warmup_s: float = 0.3
            ) -> dict[str, Any]:
    """``cycles`` cycles over ``paths`` (the order flips every cycle), each path running
    ``slice_s`` per cycle.  Per path and slice: calls, client CPU, wall, server CPU (runtime
    and ticks); or the error that kept the path from running."""
    keys = ("calls", "client", "wall", "server", "server_ticks")
    results: dict[str, Any] = {"paths": {p: {k: [] for k in keys} for p in paths}}
    per_path = results["paths"]
    servers: dict[str, _Child] = {}
    clients: dict[str, _Child] = {}
    try:
        for path in paths:
            kind = _info(path)[0]
            base = path.startswith(BASELINE)
            tree = (_baseline_dir or REPO) if base else REPO
            try:
                if kind not in servers:
                    servers[kind] = _Child(["--serve", kind.replace(BASELINE, "")], tree=tree)
                server = servers[kind]
                if not server.first.startswith("READY "):
                    raise RuntimeError("server %s: %r" % (kind, server.first))
                _, url, pid = server.first.split()
                per_path[path]["server_pid"] = int(pid)
                child = _Child(["--client", path.replace(BASELINE, ""), url], tree=tree)
                clients[path] = child
                if child.first != "READY":
                    raise RuntimeError(child.first)
                child.ask("run %.3f %d" % (warmup_s, MAX_CALLS_PER_ROUND), 60)
            except Exception as error:
                per_path[path]["error"] = str(error)
                clients.pop(path, None)
        live = [p for p in paths if p in clients]
        steal0, all0 = machine_steal()
        began = time.monotonic()
        for cycle in range(cycles):
            for path in (live if cycle % 2 == 0 else live[::-1]):
                row, pid = per_path[path], per_path[path]["server_pid"]
                ticks, runtime = process_cpu(pid), process_runtime(pid)
                answer = clients[path].ask("run %.3f %d" % (slice_s, MAX_CALLS_PER_ROUND),
                                           slice_s * 20 + 30)
                row["server"].append(process_runtime(pid) - runtime)
                row["server_ticks"].append(process_cpu(pid) - ticks)
                calls, cpu, wall = answer.split()
                row["calls"].append(int(calls))
                row["client"].append(float(cpu))
                row["wall"].append(float(wall))
        steal1, all1 = machine_steal()
        results["seconds"] = time.monotonic() - began
        results["steal"] = (steal1 - steal0) / max(1, all1 - all0)
    finally:
        for child in list(clients.values()) + list(servers.values()):
            child.close()
    results["cycles"], results["slice_s"] = cycles, slice_s
    return results


# --- summaries and tables ------------------------------------------------------------------------

def _low(values: list[float]) -> float:
    """The 10th percentile: the cost in the quietest slices (interference only ever adds)."""
    ordered = sorted(values)
    return ordered[max(0, int(round(0.1 * (len(ordered) - 1))))]


def summarize(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per path that ran, for client, server and wall: ``(p10, median)`` seconds per call over
    the slices; ``x_floor``, ``x_hprose``, ``x_half``: ``(p10 / p10 of the other path,
    median of the per-cycle ratios)``; ``server_stat``: the whole run's server CPU per call
    from /proc/PID/stat (utime + stime)."""
    per_path = results["paths"]
    out: dict[str, dict[str, Any]] = {}
    for path, row in per_path.items():
        if not row.get("calls"):
            continue
        per_call = {k: [v / n for v, n in zip(row[k], row["calls"])]
                    for k in ("client", "server", "wall")}
        entry: dict[str, Any] = {k: (_low(v), statistics.median(v)) for k, v in per_call.items()}
        entry["per_call"] = per_call
        entry["server_stat"] = sum(row["server_ticks"]) / sum(row["calls"])
        entry["calls"] = sum(row["calls"])
        out[path] = entry
    for path, entry in out.items():
        pairs = [("floor", "x_floor"), ("hprose", "x_hprose"), ("tcp-half", "x_half")]
        if not path.startswith(BASELINE):
            pairs.append((BASELINE + path, "x_base"))
        for other, name in pairs:
            if other in out and other != path:
                theirs = out[other]
                entry[name] = {k: (entry[k][0] / theirs[k][0], statistics.median(
                    [a / b for a, b in zip(entry["per_call"][k], theirs["per_call"][k])]))
                    for k in ("client", "server", "wall")}
    return out


def _us(pair: tuple[float, float]) -> str:
    return "%.1f us (%.0f)" % (pair[0] * 1e6, pair[1] * 1e6)


def _x(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else "%.2fx (%.1fx)" % pair


def markdown(results: dict[str, Any]) -> str:
    sums = summarize(results)
    lines = ["| path | client CPU/call | x floor | server CPU/call | x floor | wall/call "
             "| x floor | calls |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path, row in results["paths"].items():
        if path not in sums:
            lines.append("| %s | not run: %s | | | | | | |" % (_info(path)[1],
                                                            row.get("error", "no rounds")))
            continue
        entry = sums[path]
        cells = [_info(path)[1]]
        for key in ("client", "server", "wall"):
            cells.append(_us(entry[key]))
            cells.append(_x(entry["x_floor"][key]) if "x_floor" in entry else "1x")
        cells.append("{:,}".format(entry["calls"]))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if "http" in sums and "x_hprose" in sums["http"]:
        x = sums["http"]["x_hprose"]
        notes.append("HttpClient -> HttpServer / hprose 1.4.3's: client CPU %s, server CPU %s, "
                     "wall %s." % (_x(x["client"]), _x(x["server"]), _x(x["wall"])))
    if "tcp-full" in sums and "x_half" in sums["tcp-full"]:
        x = sums["tcp-full"]["x_half"]
        notes.append("TCP full duplex / half duplex (1 thread): client CPU %s, server CPU %s, "
                     "wall %s." % (_x(x["client"]), _x(x["server"]), _x(x["wall"])))
    for path, entry in sums.items():
        if "x_base" in entry:
            x = entry["x_base"]
            notes.append("%s / its baseline: client CPU %s, server CPU %s, wall %s."
                         % (path, _x(x["client"]), _x(x["server"]), _x(x["wall"])))
    notes.append("Server CPU per call from /proc/PID/stat (utime+stime), mean over the whole "
                 "run: %s." % ", ".join("%s %.1f us" % (p, e["server_stat"] * 1e6)
                                        for p, e in sums.items()))
    notes.append("Each cell: the 10th percentile over %d slices of %.2f s per path (the quiet "
                 "slices; interference only adds), the median in brackets; ratios: of the 10th "
                 "percentiles, and in brackets the median of the per-cycle ratios.  CPU stolen "
                 "by the hypervisor while measuring: %.1f %%."
                 % (results["cycles"], results["slice_s"], 100 * results.get("steal", 0.0)))
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def rows(results: dict[str, Any]) -> list[Any]:
    """The section's rows for ``run.py`` (ratios and the issue's targets)."""
    from common import Row

    sums = summarize(results)
    out = []
    for path, row in results["paths"].items():
        label = 'hello("w"), %s' % _info(path)[1]
        if path not in sums:
            out.append(Row("7. CPU per call", label, "not run: %s" % row.get("error", "?")))
            continue
        entry = sums[path]
        text = "client %s, server %s, wall %s" % (_us(entry["client"]), _us(entry["server"]),
                                                  _us(entry["wall"]))
        target, met = "", None
        x = entry.get("x_floor")
        if x:
            text += "; x floor: client %s, server %s, wall %s" % (
                _x(x["client"]), _x(x["server"]), _x(x["wall"]))
        if x and path in ("tcp-half", "tcp-full"):
            target = "<= 3x floor each side"
            met = x["client"][0] <= 3 and x["server"][0] <= 3
        if path == "tcp-full" and "x_half" in entry:
            h = entry["x_half"]
            text += "; / half duplex: wall %s, client %s" % (_x(h["wall"]), _x(h["client"]))
            target += ", wall within 10% of half duplex"
            met = bool(met) and h["wall"][0] <= 1.10
        if path == "http" and "x_hprose" in entry:
            h = entry["x_hprose"]
            text += "; / hprose 1.4.3: client %s, server %s, wall %s" % (
                _x(h["client"]), _x(h["server"]), _x(h["wall"]))
            target = "server <= 1/4, client <= 1/3 of hprose 1.4.3"
            met = h["server"][0] <= 0.25 and h["client"][0] <= 1 / 3
        out.append(Row("7. CPU per call", label, text, target, met,
                       {k: row[k] for k in ("calls", "client", "server", "wall")}))
    return out


def cpu_per_call(etcd: str, settings: Any, **_: object) -> list[Any]:
    """The ``run.py`` section (needs no etcd)."""
    check_frames()
    cycles, slice_s = (8, 0.1) if settings.quick else (DEFAULT_CYCLES, DEFAULT_SLICE)
    results = measure(DEFAULT_PATHS, cycles, slice_s)
    global LAST_TABLE
    LAST_TABLE = markdown(results)
    return rows(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help="comma-separated, of %s (default: %s)"
                             % (", ".join(PATHS), ",".join(DEFAULT_PATHS)))
    parser.add_argument("--cycles", type=int, default=DEFAULT_CYCLES,
                        help="cycles over the paths (default %d)" % DEFAULT_CYCLES)
    parser.add_argument("--slice", type=float, default=DEFAULT_SLICE,
                        help="seconds per path per cycle (default %.2f)" % DEFAULT_SLICE)
    parser.add_argument("--quick", action="store_true", help="8 cycles of 0.1 s")
    parser.add_argument("--json", help="also write the raw slices to this file")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run our paths on the hprose_cluster in DIR (base:PATH)")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.client:
        client(*args.client)
        return 0
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error("unknown path(s) %s; choose from %s" % (unknown, ", ".join(PATHS)))
    if args.baseline:
        global _baseline_dir
        _baseline_dir = os.path.abspath(args.baseline)
        if not os.path.isdir(os.path.join(_baseline_dir, "hprose_cluster")):
            parser.error("no hprose_cluster package in %s" % _baseline_dir)
        paths += [BASELINE + p for p in paths if PATHS[p][0] not in ("floor", "hprose")]
    cycles, slice_s = (8, 0.1) if args.quick else (args.cycles, args.slice)
    check_frames()
    load = os.getloadavg()[0]
    results = measure(paths, cycles, slice_s)
    print(markdown(results))
    print("\nPython %s, %d CPUs, load average %.1f before and %.1f after; one calling thread; "
          "%.0f s of slices." % (sys.version.split()[0], os.cpu_count() or 0, load,
                                 os.getloadavg()[0], results.get("seconds", 0.0)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""WebSocket and unix-socket rows beside TCP: calls per second, and the WebSocket layer's cost.

    python benchmarks/bench_ws_unix.py                 # 2 s per row
    python benchmarks/bench_ws_unix.py --seconds 0.5   # a smoke run

Rows, with 1 and 8 client threads: ``TcpClient`` half and full duplex (the baseline),
``WebSocketClient`` (one connection, ids, out-of-order replies: full duplex TCP's shape),
``UnixClient`` half and full duplex.  The servers (``TcpServer``, ``WebSocketServer``,
``UnixServer``, each serving ``hello``) run in one subprocess, so clients and servers do not
share a GIL.  Contenders alternate in short rounds and the median rate is reported
(``compare()`` of bench_transports.py, which this reuses).  The last table is the CPU time the
``websockets`` sans-I/O layer adds per call on each side (frame a request, parse it, frame the
reply, parse it), measured in-process with no socket.

It plugs into bench_transports.py as extra contenders: ``contenders(urls)`` returns rows in
its ``(name, server, make, shared)`` shape and ``SERVER_SCRIPT`` prints the three URLs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from bench_transports import compare  # noqa: E402

from hprose_cluster.transport.tcp import TcpClient  # noqa: E402
from hprose_cluster.transport.unix import UnixClient  # noqa: E402
from hprose_cluster.transport.websocket import WebSocketClient  # noqa: E402

SERVER_SCRIPT = r"""
import sys
from hprose_cluster.transport.tcp import TcpServer
from hprose_cluster.transport.unix import UnixServer
from hprose_cluster.transport.websocket import WebSocketServer
def hello(name):
    return "Hello " + name
servers = [TcpServer("127.0.0.1", 0), WebSocketServer("127.0.0.1", 0), UnixServer()]
for server in servers:
    server.add(hello)
    server.start(block=False)
print(*(server.url for server in servers), flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
for server in servers:
    server.stop(drain_timeout=2)
"""


def contenders(tcp_url: str, ws_url: str, unix_url: str
               ) -> list[tuple[str, str, Callable[[], Any], bool]]:
    return [
        ("TcpClient full duplex", "TcpServer",
         lambda: TcpClient(tcp_url, timeout=30, full_duplex=True), True),
        ("TcpClient half duplex", "TcpServer", lambda: TcpClient(tcp_url, timeout=30), True),
        ("WebSocketClient", "WebSocketServer", lambda: WebSocketClient(ws_url, timeout=30), True),
        ("UnixClient full duplex", "UnixServer",
         lambda: UnixClient(unix_url, timeout=30, full_duplex=True), True),
        ("UnixClient half duplex", "UnixServer", lambda: UnixClient(unix_url, timeout=30), True),
    ]


def layer_cost(calls: int = 20_000) -> list[tuple[str, float]]:
    """Microseconds of CPU per call spent in the websockets protocol objects."""
    from websockets.client import ClientProtocol
    from websockets.protocol import OPEN
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    from hprose_cluster.transport.websocket.protocol import Channel

    client = Channel(ClientProtocol(parse_uri("ws://h/"), state=OPEN))
    server = Channel(ServerProtocol(state=OPEN))
    request = b"\x00\x00\x00\x01" + b'Cs5"hello"a1{s5"bench"}z'
    reply = b"\x00\x00\x00\x01" + b'Rs11"Hello bench"z'
    rows = []
    for label, sender, receiver, payload in (
            ("request: the client frames it (masked), the server parses it", client, server,
             request),
            ("reply: the server frames it, the client parses it", server, client, reply)):
        wire = sender.message(payload)
        started = time.process_time()
        for _ in range(calls):
            sender.message(payload)
        framed = time.process_time() - started
        started = time.process_time()
        for _ in range(calls):
            receiver.receive(wire)
        parsed = time.process_time() - started
        rows.append((label, (framed + parsed) / calls * 1e6))
    return rows


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
        tcp_url, ws_url, unix_url = proc.stdout.readline().split()
        rows = contenders(tcp_url, ws_url, unix_url)
        print("| client | server | threads | calls | calls/s | vs TcpClient full duplex |")
        print("|---|---|---:|---:|---:|---:|")
        for threads in [int(t) for t in options.threads.split(",")]:
            results = compare(rows, threads, options.seconds, options.rounds)
            baseline = results[0][3]
            for name, server, calls, rate in results:
                print("| %s | %s | %d | %d | %.0f | %.2fx |"
                      % (name, server, threads, calls, rate, rate / baseline), flush=True)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(15)
    print("\n| websockets sans-I/O layer, per message | CPU µs |\n|---|---:|")
    for label, micros in layer_cost():
        print("| %s | %.1f |" % (label, micros))
    print("\nPython %s, %d CPUs, load average %.1f, %.1f s per row in %d alternating rounds "
          "(median rate), servers in one subprocess."
          % (sys.version.split()[0], os.cpu_count() or 0, os.getloadavg()[0], options.seconds,
             options.rounds))


if __name__ == "__main__":
    main()

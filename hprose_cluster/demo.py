"""The hello demo: one command that shows a domain of servers acting as one service.

It starts an embedded etcd on free ports in a temporary folder, starts three hello servers as
separate processes (they register themselves), calls them through one ``ClusterClient`` printing
which server answered, SIGKILLs the primary, shows the calls carrying on elsewhere without a
failed call, then stops everything and removes what it wrote.

``python -m hprose_cluster.demo serve ...`` is one hello server (what the demo spawns).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, TextIO

HELLO_DOMAINS = {"tcp": "tcp.hello.server", "http": "http.hello.server",
                 "ws": "ws.hello.server", "unix": "unix.hello.server"}


# --- the hello service ------------------------------------------------------------------------

def hello(name: str) -> str:
    return "Hello %s" % name


def sum(a: int, b: int) -> int:  # noqa: A001 - the remote method is called "sum"
    return a + b


def fail() -> None:
    raise Exception("boom")


def sleep(seconds: float) -> float:
    """Answer after ``seconds``: a slow call, for timeout, drain and kill-mid-call tests."""
    time.sleep(float(seconds))
    return seconds


def make_server(transport: str, domain: str, *, etcd: str | None = None, host: str = "127.0.0.1",
                port: int = 0, ttl: int = 10, heartbeat: float = 3.0, drain_delay: float = 0.5,
                path: str | None = None, **options: Any):
    """A ClusterHttpServer, ClusterTcpServer, ClusterWebSocketServer (``"ws"``) or
    ClusterUnixServer (``"unix"``, on ``path`` or a temporary socket) serving hello, sum,
    fail, sleep and whoami (``options`` go to the server class: ``uuid``, ``cpu``, ...)."""
    from . import server as servers

    common: dict[str, Any] = dict(etcd=etcd, ttl=ttl, heartbeat=heartbeat,
                                  drain_delay=drain_delay, **options)
    if transport == "unix":
        server: Any = servers.ClusterUnixServer(domain, path, **common)
    else:
        classes = {"http": servers.ClusterHttpServer, "tcp": servers.ClusterTcpServer}
        cls = servers.ClusterWebSocketServer if transport == "ws" else classes[transport]
        server = cls(domain, host, port, **common)

    def whoami() -> str:
        return "%s (pid %d)" % (server.url, os.getpid())

    for function in (hello, sum, fail, sleep, whoami):
        server.addFunction(function)
    return server


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hprose_cluster.demo serve",
                                     description="Run one hello server that registers itself.")
    parser.add_argument("--transport", choices=sorted(HELLO_DOMAINS), default="tcp")
    parser.add_argument("--domain", help="service domain (default: tcp.hello.server or "
                                         "http.hello.server)")
    parser.add_argument("--etcd", help="etcd endpoints (default: $HPROSE_CLUSTER_ETCD)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--socket", metavar="PATH",
                        help="unix socket path (--transport unix; default: a temporary one)")
    parser.add_argument("--ttl", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=3.0)
    parser.add_argument("--drain-delay", type=float, default=0.5,
                        help="seconds between leaving the registry and closing connections "
                             "on SIGTERM (default 0.5)")
    parser.add_argument("--drain-timeout", type=float, default=10.0,
                        help="longest wait for calls in flight on SIGTERM (default 10)")
    args = parser.parse_args(argv)
    server = make_server(args.transport, args.domain or HELLO_DOMAINS[args.transport],
                         etcd=args.etcd, host=args.host, port=args.port, ttl=args.ttl,
                         heartbeat=args.heartbeat, drain_delay=args.drain_delay,
                         path=args.socket)
    server.start(block=False)
    # One line for whoever started us: the server is registered and serving.
    print("READY %s %d" % (server.url, os.getpid()), flush=True)
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop["now"]:
        time.sleep(0.1)
    server.stop(drain_timeout=args.drain_timeout)
    return 0


# --- the demo ---------------------------------------------------------------------------------

class _Servers:
    """Hello server processes; every one is stopped on exit, whatever happened."""

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.sockets = tempfile.mkdtemp(prefix="hprose-cluster-demo-")  # unix sockets
        self.started = 0

    def start(self, transport: str, domain: str, etcd: str) -> tuple[str, int]:
        self.started += 1
        extra = ["--socket", os.path.join(self.sockets, "hello-%d.sock" % self.started)] \
            if transport == "unix" else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "hprose_cluster.demo", "serve", "--transport", transport,
             "--domain", domain, "--etcd", etcd, "--ttl", "3", "--heartbeat", "1", *extra],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.procs[proc.pid] = proc
        line = proc.stdout.readline().split() if proc.stdout else []
        if len(line) != 3 or line[0] != "READY":
            raise RuntimeError("a hello server failed to start (exit code %s)" % proc.poll())
        return line[1], int(line[2])

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs.pop(pid).wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout:
                proc.stdout.close()
        self.procs.clear()
        shutil.rmtree(self.sockets, ignore_errors=True)  # a killed server leaves its socket


def run_demo(transport: str = "tcp", *, rounds: int = 6, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the number of failed calls (0 when all went well)."""
    from .client import ClusterClient
    from .embedded import EmbeddedEtcd
    from .errors import EtcdError

    say: Callable[[str], None] = lambda text: print(text, file=out, flush=True)
    domain = HELLO_DOMAINS[transport]
    failed = 0
    try:
        etcd = EmbeddedEtcd(name="demo")
        etcd.start()
    except EtcdError as error:
        say("cannot start the embedded etcd: %s" % error)
        return 1
    servers = _Servers()
    try:
        say("etcd is up at %s (data in a temporary folder)" % etcd.endpoint)
        for _ in range(3):
            url, pid = servers.start(transport, domain, etcd.endpoint)
            say("hello server %s (pid %d) registered in %s" % (url, pid, domain))
        with ClusterClient(domain, etcd=etcd.endpoint, idempotent=True, timeout=5) as client:
            client.discovery.wait_for_servers(5, count=3)
            say("client follows %s: %d servers" % (domain, len(client.servers())))

            def call_round(label: str) -> str | None:
                nonlocal failed
                try:
                    greeting = client.hello("world")
                    who = client.whoami()
                    total = client.sum(1, 2)
                except Exception as error:  # the demo counts, and shows, any failed call
                    failed += 1
                    say("%s FAILED: %s" % (label, error))
                    return None
                say("%s %s, 1 + 2 = %s  <- answered by %s" % (label, greeting, total, who))
                return who

            who = None
            for i in range(rounds // 2):
                who = call_round("call %d:" % (i + 1)) or who
            if who is None:
                return failed or 1
            pid = int(who.rsplit("pid ", 1)[1].rstrip(")"))
            say("SIGKILL the primary, pid %d" % pid)
            servers.kill(pid)
            for i in range(rounds // 2, rounds):
                call_round("call %d:" % (i + 1))
            try:
                client.fail()
            except Exception as error:
                say("fail() raised as it should: %s" % error)
        say("%d failed calls" % failed)
        return failed
    finally:
        servers.close()
        etcd.close()
        say("stopped the servers and etcd; removed the temporary folder")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m hprose_cluster.demo",
                                     description="The hello demo on an embedded etcd.")
    parser.add_argument("--transport", choices=sorted(HELLO_DOMAINS), default="tcp")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    return 0 if run_demo(args.transport, rounds=args.rounds) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

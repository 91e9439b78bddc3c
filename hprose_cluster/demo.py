"""The hello demo: one command that shows a domain of servers acting as one service.

It starts an embedded etcd on free ports in a temporary folder, starts three hello servers as
separate processes (they register themselves), calls them through one ``ClusterClient`` printing
which server answered, SIGKILLs the primary, shows the calls carrying on elsewhere without a
failed call, then stops everything and removes what it wrote.

``python -m hprose_cluster.demo serve ...`` is one hello server (what the demo spawns).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, TextIO

from .cli.signals import STOP_SIGNALS, StopSignals, Stopped
from .errors import ConfigError, EtcdError

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


def _die_with(parent: int) -> None:
    """Ask for SIGTERM when the demo that started us dies, even by SIGKILL (Linux), so a
    hello server never outlives it; SIGTERM is the graceful stop: deregister, then exit."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the demo died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hprose_cluster.demo serve",
                                     description="Run one hello server that registers itself.")
    parser.add_argument("--transport", choices=sorted(HELLO_DOMAINS), default="tcp")
    parser.add_argument("--domain", help="service domain (default: TRANSPORT.hello.server)")
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
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # the demo's pid
    args = parser.parse_args(argv)
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    if args.parent:
        _die_with(args.parent)
    server = make_server(args.transport, args.domain or HELLO_DOMAINS[args.transport],
                         etcd=args.etcd, host=args.host, port=args.port, ttl=args.ttl,
                         heartbeat=args.heartbeat, drain_delay=args.drain_delay,
                         path=args.socket)
    server.start(block=False)
    try:
        # One line for whoever started us: the server is registered and serving.
        print("READY %s %d" % (server.url, os.getpid()), flush=True)
        while not stop["now"]:
            time.sleep(0.1)
    finally:
        server.stop(drain_timeout=args.drain_timeout)
    return 0


# --- the demo ---------------------------------------------------------------------------------

class _StartFailed(Exception):
    """A hello server did not come up."""


class _Quiet(Exception):
    """The output went away (a closed pipe or terminal): stop without another word."""


class _Say:
    """Prints demo lines; a failed write (``| head``, a closed terminal) asks the demo to stop
    instead of raising in the middle of a call or of the clean-up."""

    def __init__(self, out: TextIO, stop: StopSignals):
        self.out = out
        self.stop = stop
        self.gone = False

    def __call__(self, text: str) -> None:
        if self.gone:
            return
        try:
            print(text, file=self.out, flush=True)
        except (OSError, ValueError):
            self.gone = True
            self.stop.request()
            if self.out is sys.stdout:  # and no complaint from the interpreter's last flush
                sys.stdout = open(os.devnull, "w")


def _socket_folder() -> str:
    """A new folder for the hello servers' unix sockets: in TMPDIR, unless that is too deep
    for a socket path (sun_path holds 107 bytes), then in /tmp.  Removed on exit either way."""
    from .record import MAX_UNIX_PATH

    folder = tempfile.mkdtemp(prefix="hprose-cluster-demo-")
    longest = os.path.join(folder, "hello-999.sock")
    if len(os.fsencode(longest)) <= MAX_UNIX_PATH:
        return folder
    os.rmdir(folder)
    return tempfile.mkdtemp(prefix="hprose-cluster-demo-", dir="/tmp")


class _Servers:
    """Hello server processes; every one is stopped on exit, whatever happened."""

    def __init__(self, stop: StopSignals) -> None:
        self.stop = stop
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.sockets: str | None = None  # a temporary folder for unix sockets, made on need
        self.started = 0

    def start(self, transport: str, domain: str, etcd: str,
              timeout: float = 30.0) -> tuple[str, int] | None:
        """Start one and wait for its READY line; None if a stop came first."""
        self.started += 1
        extra: list[str] = []
        if transport == "unix":
            if self.sockets is None:
                self.sockets = _socket_folder()
            extra = ["--socket", os.path.join(self.sockets, "hello-%d.sock" % self.started)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "hprose_cluster.demo", "serve", "--transport", transport,
             "--domain", domain, "--etcd", etcd, "--ttl", "3", "--heartbeat", "1",
             "--parent", str(os.getpid()), *extra],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True)  # no terminal signal reaches it: we stop it ourselves
        self.procs[proc.pid] = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not self.stop.requested:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                words = proc.stdout.readline().split()
                if len(words) == 3 and words[0] == "READY":
                    return words[1], int(words[2])
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if self.stop.requested:
            return None
        raise _StartFailed("a hello server failed to start (exit code %s)" % proc.poll())

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
        if self.sockets is not None:  # a killed server leaves its socket
            shutil.rmtree(self.sockets, ignore_errors=True)
            self.sockets = None


def run_demo(transport: str = "tcp", *, rounds: int = 6, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the exit status: 0 when no call failed, 1 when one did (or the
    demo could not run, or its output went away), 128 + N when signal N stopped it.  Whatever
    ends it, the servers and etcd are stopped and the temporary folder removed first."""
    if transport not in HELLO_DOMAINS:
        raise ConfigError("transport must be one of %s, got %r" % (sorted(HELLO_DOMAINS),
                                                                   transport))
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise ConfigError("--rounds must be at least 2 (calls before and after the primary "
                          "is killed), got %r" % (rounds,))
    with StopSignals() as stop:
        return _run(transport, rounds, _Say(out, stop), stop)


def _run(transport: str, rounds: int, say: _Say, stop: StopSignals) -> int:
    from .client import ClusterClient
    from .embedded import EmbeddedEtcd

    def checkpoint() -> None:
        stop.check()
        if stop.requested:
            raise _Quiet()

    domain = HELLO_DOMAINS[transport]
    servers = _Servers(stop)
    etcd = EmbeddedEtcd(name="demo")
    try:
        try:
            etcd.start()
        except EtcdError as error:
            say("cannot start the embedded etcd: %s" % error)
            return 1
        checkpoint()
        say("etcd is up at %s (data in a temporary folder)" % etcd.endpoint)
        for _ in range(3):
            started = servers.start(transport, domain, etcd.endpoint)
            checkpoint()
            assert started is not None
            say("hello server %s (pid %d) registered in %s" % (started[0], started[1], domain))
        failed = 0
        with ClusterClient(domain, etcd=etcd.endpoint, idempotent=True, timeout=5) as client:
            client.discovery.wait_for_servers(5, count=3)
            say("client follows %s: %d servers" % (domain, len(client.servers())))

            def call_round(label: str) -> str | None:
                nonlocal failed
                checkpoint()
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
                say("no call succeeded before the kill; stopping")
                return 1
            pid = int(who.rsplit("pid ", 1)[1].rstrip(")"))
            say("SIGKILL the primary, pid %d" % pid)
            servers.kill(pid)
            for i in range(rounds // 2, rounds):
                call_round("call %d:" % (i + 1))
            checkpoint()
            try:
                client.fail()
            except Exception as error:
                say("fail() raised as it should: %s" % error)
        say("%d failed calls" % failed)
        return 0 if failed == 0 else 1
    except Stopped as stopped:
        say("%s; stopping the servers and etcd" % stopped)
        return stopped.exit_code
    except _StartFailed as error:
        say(str(error))
        return 1
    except _Quiet:
        return 1
    finally:
        servers.close()
        etcd.close()
        say("stopped the servers and etcd; removed the temporary folder")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    parser = argparse.ArgumentParser(description="The hello demo on an embedded etcd.")
    parser.add_argument("--transport", choices=sorted(HELLO_DOMAINS), default="tcp")
    parser.add_argument("--rounds", type=int, default=6,
                        help="calls before and after the kill (at least 2; default 6)")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.transport, rounds=args.rounds)
    except ConfigError as error:
        parser.error(str(error))
        return 2  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())

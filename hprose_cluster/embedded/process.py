"""Ports, process spawning, and the registry of running servers (stopped at exit).

Nothing may outlive us: every running server is in a registry that an ``atexit`` hook stops,
and on Linux the child gets ``PR_SET_PDEATHSIG = SIGKILL`` so a SIGKILLed parent takes it down
too.  The kernel sends that signal when the *thread* that forked the child exits, not the
process; so every child is forked from one long-lived daemon thread of ours, never from the
caller's thread (a server started from a short-lived worker thread would otherwise die with it).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .member import EmbeddedEtcd

log = logging.getLogger("hprose_cluster.embedded")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's choice for port 0)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
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



_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


prctl = _load_prctl()


def die_with_parent() -> None:
    """Run in the child between fork and exec: get SIGKILL when the forking thread dies."""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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


spawner = _Spawner()

# Every EmbeddedEtcd whose process may be running; stopped at exit.
_live: set["EmbeddedEtcd"] = set()
_live_lock = threading.Lock()


def track(instance: "EmbeddedEtcd") -> None:
    """``instance`` has a process that may be running: stop it at exit."""
    with _live_lock:
        _live.add(instance)


def forget(instance: "EmbeddedEtcd") -> None:
    with _live_lock:
        _live.discard(instance)


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

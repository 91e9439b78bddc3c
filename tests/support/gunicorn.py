"""A real gunicorn serving a real ``hprose.HproseHttpService`` WSGI app, with the
hprose-cluster hooks, for tests: its master, workers and keeper are found through /proc."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from tests.support.cli import env as clean_env

APP = '''
import os, time
from hprose import HproseHttpService


def hello(name):
    return "Hello %s" % name


def whoami():
    return os.getpid()


def sleep(seconds):
    open("sleeping", "w").close()  # the test knows the call reached a worker
    time.sleep(seconds)
    return seconds


def count(domain):
    """Servers in ``domain``, read from etcd by the worker itself (gRPC after the fork)."""
    from hprose_cluster import Discovery

    discovery = Discovery(domain).start()
    try:
        return len(discovery.servers())
    finally:
        discovery.close()


app = HproseHttpService()
for function in (hello, whoami, sleep, count):
    app.addFunction(function)
'''


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != b"Z":
            found.append((int(entry), cmdline))
    return found


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %g s: %s" % (timeout, what))
        time.sleep(0.05)


class Gunicorn:
    """``python -m gunicorn`` with the given arguments; the app module ``app`` is written to
    ``folder``; output goes to ``folder/gunicorn.log``."""

    def __init__(self, folder: Path, etcd: str, domain: str | None, args: Sequence[str],
                 workers: int = 2, **extra_env: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        (folder / "app.py").write_text(APP)
        self.log_path = folder / "gunicorn.log"
        self.workers = workers
        # HOME: gunicorn 25+ puts a control socket in ~/.gunicorn; this one is the test's own.
        settings = {"HPROSE_CLUSTER_TTL": "2", "HPROSE_CLUSTER_HEARTBEAT": "0.5",
                    "HPROSE_CLUSTER_DRAIN_DELAY": "0.5", "HOME": str(folder)}
        if domain is not None:
            settings["HPROSE_CLUSTER_DOMAIN"] = domain
        settings.update(extra_env)  # a test's own settings win
        environment = clean_env(etcd, **settings)
        config = [] if "-c" in args else ["-c", "python:hprose_cluster.gunicorn"]
        command = [sys.executable, "-m", "gunicorn", *config, "--chdir", str(folder), "-w",
                   str(workers), "--graceful-timeout", "20", *args, "app:app"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, env=environment, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The live workers: children gunicorn logged booting.  Not "every child but the
        keeper": between its fork and its exec the keeper has the master's command line,
        so under load it could pass for a worker."""
        booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.log())}
        return [pid for pid, _ in children(self.proc.pid) if pid in booted]

    def keeper_pids(self) -> list[int]:
        return [pid for pid, cmd in children(self.proc.pid) if "--ready-fd" in cmd]

    def wait_workers(self, timeout: float = 30) -> list[int]:
        def ready() -> list[int]:
            pids = self.worker_pids()
            return pids if len(pids) == self.workers else []

        return wait_until(ready, timeout, "%d workers" % self.workers)  # type: ignore[return-value]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid, _ in children(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait(10)

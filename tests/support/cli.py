"""Running the ``hprose-cluster`` command as a user runs it: a subprocess, its output read
with deadlines.

``run()`` runs a command to completion; ``Lines`` starts a long-running one (``watch``,
``register``, ``etcd``) whose stdout is read on a thread, so a test can wait for a line with
a deadline and then stop it with a signal.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable
from uuid import uuid4

COMMAND = [sys.executable, "-m", "hprose_cluster"]


def env(endpoint: str | None, **extra: str) -> dict[str, str]:
    """This process's environment without HPROSE_CLUSTER_* settings, pointed at ``endpoint``."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("HPROSE_CLUSTER_")}
    if endpoint is not None:
        result["HPROSE_CLUSTER_ETCD"] = endpoint
    result["PYTHONUNBUFFERED"] = "1"
    result.update(extra)
    return result


def run(endpoint: str | None, *args: str, timeout: float = 60,
        **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(COMMAND + list(args), env=env(endpoint, **extra_env),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def unique(kind: str) -> str:
    """A domain name no other test uses."""
    return "%s%s.cli" % (kind, uuid4().hex[:8])


class Lines:
    """A running subcommand whose stdout is read on a thread, so reads can have deadlines."""

    def __init__(self, endpoint: str | None, *args: str, command: list[str] | None = None,
                 **extra_env: str):
        self.proc = subprocess.Popen((command or COMMAND) + list(args),
                                     env=env(endpoint, **extra_env), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []  # stderr lines so far
        self._reader = threading.Thread(target=self._read, daemon=True, name="test-cli-reader")
        self._reader.start()
        self._error_reader = threading.Thread(target=self._read_errors, daemon=True,
                                              name="test-cli-stderr")
        self._error_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        except (OSError, ValueError):  # the test closed the pipe (a reader going away)
            pass
        finally:
            self.lines.put(None)

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.errors.append(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

    def wait_for_error(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        """The first stderr line (seen so far or to come) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.errors):
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError("no matching stderr line within %g s; got %r"
                                     % (timeout, self.errors))
            time.sleep(0.05)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        """The first new line for which ``predicate`` holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching line within %g s; got %r" % (timeout, self.seen))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the command exited (%s) before a matching line; got %r; "
                                     "stderr %r" % (self.proc.wait(5), self.seen, self.stderr()))
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, timeout: float = 20) -> list[str]:
        """Every further stdout line until the command exits (which it must within timeout)."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the command did not exit within %g s" % timeout)
            if line is None:
                return lines
            self.seen.append(line)
            lines.append(line)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        """All of stderr, once the command has exited (what came so far while it runs)."""
        if self.proc.poll() is not None:
            self._error_reader.join(10)
        return "".join(line + "\n" for line in self.errors)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

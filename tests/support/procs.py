"""Finding what a command left behind: processes (by an environment marker every child
inherits) and files (in a TMPDIR the test owns).

A test starts a command with ``marked_env()`` and afterwards asserts that ``wait_gone()``
finds no process carrying the marker and that the TMPDIR it gave is empty.  ``stop_process()`` ends a
child the test started: a signal, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

MARK = "HC_TEST_MARK"


def stop_process(proc: subprocess.Popen[Any], signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to a running ``proc`` and wait up to 30 s for it; SIGKILL after that."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def new_mark() -> str:
    return uuid4().hex


def marked(mark: str) -> list[int]:
    """PIDs of live processes (zombies excluded) whose environment holds ``MARK=mark``."""
    needle = ("%s=%s" % (MARK, mark)).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read()
            with open("/proc/%s/stat" % entry, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def wait_gone(mark: str, timeout: float = 20.0) -> list[int]:
    """Wait until no process carries ``mark``; returns those still there at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked(mark)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_marked(mark: str) -> None:
    """Teardown safety net: SIGKILL whatever still carries ``mark``."""
    for pid in marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def leftovers(folder: Path) -> list[str]:
    """Everything under ``folder`` (a test's TMPDIR), as relative paths."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def describe(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "%d: %s" % (pid, f.read().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        return "%d: (gone)" % pid


def assert_cleaned_up(env: dict[str, str], timeout: float = 30.0) -> None:
    """Nothing runs with the marker of ``env`` (within ``timeout``) and its TMPDIR is empty."""
    left = wait_gone(env[MARK], timeout)
    assert left == [], "processes left running: %s" % [describe(pid) for pid in left]
    assert leftovers(Path(env["TMPDIR"])) == [], "files left in TMPDIR"

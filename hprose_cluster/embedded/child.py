"""One child process of ours, its output in a log file: start it, signal it, watch its state.

Nothing here knows about etcd: :class:`~hprose_cluster.embedded.member.EmbeddedEtcd` decides
what to run and when; these functions do the operating-system part.  The child runs in its own
session (so terminal signals do not reach it and its whole process group can be signalled), is
forked from the long-lived spawner thread with ``PR_SET_PDEATHSIG`` (see ``process``), and
writes stdout and stderr to an appended log file, never to our terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from .process import die_with_parent, prctl, spawner


def spawn_logged(args: Sequence[str], log_path: Path, group: int | None = None
                 ) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output appended to ``log_path`` (after a line naming the command).

    ``group`` runs the child with that group id.  Raises :class:`OSError` if the program cannot
    be run; the caller turns that into an error that names what it was starting.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")
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
                preexec_fn=die_with_parent if prctl is not None else None,
                close_fds=True,
                group=group,
            )

        return spawner.popen(make)
    finally:
        log_file.close()  # the child has its own copy


def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to the child's process group; a child already gone is not an error."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - group gone, pid reused: signal the pid only
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass


def terminate(proc: subprocess.Popen[bytes], timeout: float, stopped: bool = False) -> bool:
    """SIGTERM to the child's group and wait up to ``timeout``; then SIGKILL and wait.

    A ``stopped`` child (SIGSTOP) also gets SIGCONT: it cannot act on SIGTERM while stopped.
    True if it exited by itself, False if it had to be killed.
    """
    signal_group(proc, signal.SIGTERM)
    if stopped:
        signal_group(proc, signal.SIGCONT)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        kill(proc)
        return False


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the child's group; returns once the child is gone (and reaped)."""
    signal_group(proc, signal.SIGKILL)
    proc.wait()


def wait_for_state(pid: int, stopped: bool, timeout: float = 2.0) -> None:
    """Wait (bounded) until /proc says the process is, or is no longer, stopped.

    A signal is delivered asynchronously: without this wait, a request sent right after
    SIGSTOP could still be answered.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid, "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # no /proc (or the process is gone): nothing more to wait for
        if (state in (b"T", b"t")) == stopped:
            return
        time.sleep(0.005)


def log_tail(log_path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log (read from its last 16 KiB), for error messages."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])

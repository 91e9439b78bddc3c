"""No etcd outlives us: children forked from the spawner thread, killed with their parent
(PR_SET_PDEATHSIG), stopped at exit (atexit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hprose_cluster.embedded import EmbeddedEtcd

from tests.support.embedded import process_alive, wait_dead


def test_server_started_from_a_thread_outlives_the_thread() -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits: children must be forked from our
    long-lived spawner thread, not from the caller's."""
    server = EmbeddedEtcd()
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        assert server.running
        time.sleep(0.3)
        assert server.running and server.check_health()[0]
    finally:
        server.close()


def test_killed_parent_takes_etcd_down(tmp_path: Path) -> None:
    """A SIGKILLed Python process runs no atexit: PR_SET_PDEATHSIG must take etcd down."""
    script = (
        "import sys, time\n"
        "from hprose_cluster.embedded import EmbeddedEtcd\n"
        f"e = EmbeddedEtcd({str(tmp_path / 'data')!r}).start()\n"
        "print(e.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parent.parent))
    etcd_pid = 0
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"child did not start etcd: {line!r}"
        etcd_pid = int(line)
        assert process_alive(etcd_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_dead(etcd_pid, 5), f"etcd {etcd_pid} survived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout:
            parent.stdout.close()
        if etcd_pid and process_alive(etcd_pid):  # the test failed: do not leave it running
            os.kill(etcd_pid, signal.SIGKILL)


def test_normal_exit_stops_etcd(tmp_path: Path) -> None:
    """A script that never closes its etcd leaves none behind when it exits (atexit hook,
    with PR_SET_PDEATHSIG as the backstop)."""
    script = (
        "from hprose_cluster.embedded import EmbeddedEtcd\n"
        f"e = EmbeddedEtcd({str(tmp_path / 'data')!r}).start()\n"
        "print(e.pid, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    etcd_pid = int(out.stdout.strip())
    if not wait_dead(etcd_pid, 5):
        os.kill(etcd_pid, signal.SIGKILL)
        pytest.fail(f"etcd {etcd_pid} survived the exit of the script that started it")


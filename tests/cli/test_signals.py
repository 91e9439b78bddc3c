"""Commands that start processes clean up whatever stops them: SIGTERM, SIGHUP, SIGINT, or the
terminal they run in being closed.  Cleaned up means: no child process left (found by an
environment marker every child inherits) and nothing left in the TMPDIR the command was given.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import COMMAND, Lines
from tests.support.procs import MARK, assert_cleaned_up, leftovers, marked
from tests.support.tmux import Tmux, command_shims

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = [sys.executable, str(ROOT / "examples" / "hello" / "demo.py")]
STOP_SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("command", [DEMO_SCRIPT, COMMAND + ["demo"]], ids=["script", "cli"])
def test_a_demo_stopped_by_a_signal_leaves_nothing(command, sig, sandbox):
    demo = Lines(None, "--rounds", "200000", command=command, **sandbox)
    try:
        demo.wait_for(lambda line: line.startswith("call 2:"), 60)
        children = [pid for pid in marked(sandbox[MARK]) if pid != demo.proc.pid]
        assert len(children) >= 4  # etcd and three hello servers
        demo.proc.send_signal(sig)
        rest = demo.rest(30)
        assert demo.proc.wait(5) == 128 + sig
        assert "stopped by %s" % signal.Signals(sig).name in "\n".join(rest)
        assert rest[-1] == "stopped the servers and etcd; removed the temporary folder"
        assert "Traceback" not in demo.stderr()
    finally:
        demo.close()
    assert_cleaned_up(sandbox)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_etcd_stopped_by_a_signal_removes_its_data(sig, sandbox):
    server = Lines(None, "etcd", "--client-port", "0", "--peer-port", "0", **sandbox)
    try:
        server.wait_for(lambda line: line.startswith("etcd is up"), 30)
        assert len(marked(sandbox[MARK])) == 2  # the command and its etcd
        assert leftovers(Path(sandbox["TMPDIR"]))  # the data folder exists meanwhile
        assert server.stop(sig, timeout=30) == 0
        assert "Traceback" not in server.stderr()
    finally:
        server.close()
    assert_cleaned_up(sandbox)


@pytest.mark.parametrize("command", [["etcd", "--client-port", "0", "--peer-port", "0"],
                                     ["demo"]])
def test_a_signal_while_starting_still_cleans_up(command, sandbox):
    """SIGTERM as soon as the first child exists (etcd starting): no traceback, no leftover."""
    proc = Lines(None, *command, **sandbox)
    try:
        deadline = time.monotonic() + 30
        while len(marked(sandbox[MARK])) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.proc.send_signal(signal.SIGTERM)
        proc.rest(30)
        assert proc.proc.wait(5) in (0, 128 + signal.SIGTERM)
        assert "Traceback" not in proc.stderr()
    finally:
        proc.close()
    assert_cleaned_up(sandbox)


@pytest.mark.parametrize("line, ready", [
    ("hprose-cluster demo --rounds 200000", "call 2:"),
    ("python examples/hello/demo.py --rounds 200000", "call 2:"),
    ("hprose-cluster etcd --client-port 0 --peer-port 0", "export HPROSE_CLUSTER_ETCD="),
], ids=["demo", "demo-script", "etcd"])
def test_closing_the_terminal_cleans_up(line, ready, sandbox, tmp_path):
    tmux = Tmux()
    try:
        env = dict(sandbox, PATH="%s:%s" % (command_shims(tmp_path / "bin"),
                                           os.environ["PATH"]))
        terminal = tmux.open("cmd", env=env, cwd=ROOT)
        terminal.type(line.replace("python ", sys.executable + " ", 1))
        terminal.wait_for(lambda screen: ready in screen, 60)
        assert len(marked(sandbox[MARK])) >= 3  # the shell, the command and its etcd at least
        terminal.close()
        assert_cleaned_up(sandbox)
    finally:
        tmux.close()


def test_ctrl_c_in_a_terminal_stops_the_demo_without_a_traceback(sandbox, tmp_path):
    tmux = Tmux()
    try:
        env = dict(sandbox, PATH="%s:%s" % (command_shims(tmp_path / "bin"),
                                           os.environ["PATH"]))
        terminal = tmux.open("demo", env=env, cwd=ROOT)
        terminal.type("hprose-cluster demo --rounds 200000; echo exit=$?")
        terminal.wait_for(lambda screen: "call 2:" in screen, 60)
        terminal.ctrl_c()
        screen = terminal.wait_for(lambda screen: re.search(r"^exit=\d+$", screen, re.M), 30)
        assert "exit=130" in screen and "stopped by SIGINT" in screen
        assert "Traceback" not in screen
        assert len(marked(sandbox[MARK])) == 1  # only the shell is left
    finally:
        tmux.close()
    assert_cleaned_up(sandbox)

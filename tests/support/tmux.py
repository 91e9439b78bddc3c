"""Terminals for tests whose interface is a terminal: each command runs in an interactive
shell of its own tmux session (a private tmux server on a socket in the test's folder).

``Terminal.close()`` kills the session, which is what closing a terminal window does: the
shell and the job in the foreground get SIGHUP and the pty goes away.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

import pytest


def command_shims(folder: Path) -> Path:
    """A folder of scripts running the code under test with this interpreter: ``python``,
    ``hprose-cluster``, ``gunicorn`` and ``etcd`` (the embedded binary).  Put it first on
    PATH."""
    from hprose_cluster.embedded import find_etcd_binary

    folder.mkdir(parents=True, exist_ok=True)
    scripts = {"python": '"%s"' % sys.executable,
               "hprose-cluster": '"%s" -m hprose_cluster' % sys.executable,
               "gunicorn": '"%s" -m gunicorn' % sys.executable,
               "etcd": '"%s"' % find_etcd_binary()}
    for name, command in scripts.items():
        script = folder / name
        script.write_text('#!/bin/sh\nexec %s "$@"\n' % command)
        script.chmod(0o755)
    return folder


class Tmux:
    """A private tmux server; every session runs ``bash`` without start-up files."""

    def __init__(self, wrap: Callable[[list[str]], list[str]] | None = None):
        """``wrap`` turns the command that starts the tmux server into one running it
        elsewhere (a network namespace): every shell is a child of that server."""
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed")
        # A short path of its own: a unix socket path must fit in 108 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="hc-tmux-"))
        self.socket = self.folder / "sock"
        self.config = self.folder / "tmux.conf"
        self.config.write_text("set -g history-limit 20000\n")
        self.wrap = wrap
        self.sessions: list[str] = []

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["tmux", "-f", str(self.config), "-S", str(self.socket), *args]
        if self.wrap is not None and not self.sessions:  # this one starts the server
            command = self.wrap(command)
        return subprocess.run(command, capture_output=True, text=True, timeout=20,
                              check=check)

    def open(self, name: str, env: Mapping[str, str] | None = None,
             cwd: str | os.PathLike[str] | None = None) -> "Terminal":
        args = ["new-session", "-d", "-s", name, "-x", "220", "-y", "50"]
        if cwd is not None:
            args += ["-c", str(cwd)]
        for key, value in (env or {}).items():
            args += ["-e", "%s=%s" % (key, value)]
        args += ["bash --norc --noprofile"]
        self._tmux(*args)
        self.sessions.append(name)
        terminal = Terminal(self, name)
        terminal.type("PS1='$ '; clear")
        terminal.wait_for(lambda screen: screen.strip() == "$", 10)
        return terminal

    def close(self) -> None:
        self._tmux("kill-server", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


class Terminal:
    def __init__(self, tmux: Tmux, name: str):
        self.tmux = tmux
        self.name = name

    def type(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        self.tmux._tmux("send-keys", "-t", self.name, "-l", line)
        self.tmux._tmux("send-keys", "-t", self.name, "Enter")

    def ctrl_c(self) -> None:
        self.tmux._tmux("send-keys", "-t", self.name, "C-c")

    def screen(self) -> str:
        """The visible screen and its scroll-back, trailing blanks dropped."""
        result = self.tmux._tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", self.name,
                                 check=False)
        return "\n".join(line.rstrip() for line in result.stdout.splitlines()).rstrip()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError("terminal %s: nothing matching within %g s; screen:\n%s"
                                     % (self.name, timeout, screen))
            time.sleep(0.1)

    def close(self) -> None:
        """Close the terminal: its shell and foreground job get SIGHUP."""
        self.tmux._tmux("kill-session", "-t", self.name, check=False)

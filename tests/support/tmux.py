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
from typing import Callable, Mapping, Sequence

import pytest


def command_shims(folder: Path) -> Path:
    """A folder with an ``hprose-cluster`` script running this interpreter's copy of the
    package (put it first on PATH, so a shell runs the code under test)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "hprose-cluster"
    script.write_text('#!/bin/sh\nexec "%s" -m hprose_cluster "$@"\n' % sys.executable)
    script.chmod(0o755)
    return folder


class Tmux:
    """A private tmux server; every session runs ``bash`` without start-up files."""

    def __init__(self, prefix: Sequence[str] | None = None):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed")
        # A short path of its own: a unix socket path must fit in 108 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="hc-tmux-"))
        self.socket = self.folder / "sock"
        self.prefix = list(prefix or [])  # e.g. a command entering a network namespace
        self.sessions: list[str] = []

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.prefix + ["tmux", "-S", str(self.socket), *args],
                              capture_output=True, text=True, timeout=20, check=check)

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

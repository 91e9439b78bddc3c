"""The README's walk, typed into terminals exactly as written, in the README's order.

Each ``<!-- shell N -->`` block runs in terminal N (a bash in tmux); everything runs in a
network namespace of its own, so the walk's fixed ports (etcd's default 2379, 8000, 8080...)
are really the ones in the README.  A command that ends must print exactly the lines shown
(up to what varies: ports, UUIDs, pids, times); a command that runs until Ctrl-C must print
the lines shown, in order, among others.  At the end every terminal is closed and nothing
the walk started may be left running or in TMPDIR.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.support import netns, readme
from tests.support.procs import MARK, assert_cleaned_up
from tests.support.tmux import Terminal, Tmux, command_shims

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

# Commands that run until Ctrl-C (their output is checked as it comes, not to the end).
LONG_RUNNING = ("hprose-cluster etcd", "hprose-cluster watch", "hprose-cluster register",
                "python examples/hello/server.py", "python examples/hello/wsgi.py", "etcd ",
                "HPROSE_CLUSTER_DOMAIN=http.hello.server gunicorn")
# Terminals that need the repository as their folder (the others work in a scratch folder,
# so etcd's <name>.etcd data stays out of the repository).
IN_REPOSITORY = (2, 3, 4)


class Shell:
    """One terminal of the walk and how far its screen has been checked."""

    def __init__(self, terminal: Terminal):
        self.terminal = terminal
        self.seen = 0  # screen lines already matched

    def lines(self) -> list[str]:
        # the terminal echoes Ctrl-C as "^C" with no line end: output goes on after it
        return [line[2:] if line.startswith("^C") else line
                for line in self.terminal.screen().splitlines()]

    def type(self, command: str) -> None:
        self.terminal.type(command)
        # the line where it was typed: output comes after it
        def typed() -> bool:
            lines = self.lines()
            for i in range(len(lines) - 1, self.seen - 1, -1):
                if lines[i] == "$ " + command or lines[i].startswith("$ " + command):
                    self.seen = i + 1
                    return True
            return False
        _wait(typed, 20, "terminal %s: the command %r on screen" % (self.terminal.name,
                                                                     command), self)

    def expect_among(self, expected: list[str], names: dict[str, str], timeout: float) -> None:
        """``expected`` in order, among other lines, from the current position on."""
        for want in expected:
            def found() -> bool:
                lines = self.lines()
                for i in range(self.seen, len(lines)):
                    if readme.matches(want, lines[i]):
                        readme.learn(want, lines[i], names)
                        self.seen = i + 1
                        return True
                return False
            _wait(found, timeout, "terminal %s: a line like %r" % (self.terminal.name, want),
                  self)

    def wait_prompt(self, timeout: float) -> None:
        _wait(lambda: "$" in self.lines()[self.seen:], timeout,
              "terminal %s: a prompt" % self.terminal.name, self)
        lines = self.lines()
        self.seen = lines.index("$", self.seen)

    def expect_exactly(self, expected: list[str], names: dict[str, str],
                       timeout: float) -> None:
        """The command ends (a new prompt) having printed exactly ``expected``."""
        def ended() -> bool:
            return "$" in self.lines()[self.seen:]
        _wait(ended, timeout, "terminal %s: the command to end" % self.terminal.name, self)
        lines = self.lines()
        end = lines.index("$", self.seen)
        output = [line for line in lines[self.seen:end] if line.strip()]
        assert len(output) == len(expected) and all(
            readme.matches(want, got) for want, got in zip(expected, output)), (
            "terminal %s printed\n%s\nthe README shows\n%s\nscreen:\n%s"
            % (self.terminal.name, "\n".join(output), "\n".join(expected),
               "\n".join(lines[-30:])))
        for want, got in zip(expected, output):
            readme.learn(want, got, names)
        self.seen = end


def _wait(condition, timeout: float, what: str, shell: Shell) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within %g s: %s; screen:\n%s"
                                 % (timeout, what, "\n".join(shell.lines()[-40:])))
        time.sleep(0.1)


def _long_running(command: str) -> bool:
    return command.startswith(LONG_RUNNING)


def test_the_readme_walk(tmp_path: Path, sandbox) -> None:
    wrap = netns.wrap  # skips here if no namespace can be made
    netns.prefix()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(sandbox, HOME=str(tmp_path / "home"), PYTHONPATH=str(readme.ROOT),
               PATH="%s:%s" % (command_shims(tmp_path / "bin"), os.environ["PATH"]),
               HPROSE_CLUSTER_ETCD="", PYTHONUNBUFFERED="1")
    tmux = Tmux(wrap=wrap)
    shells: dict[int, Shell] = {}
    names: dict[str, str] = {}
    try:
        walk = [block for block in readme.blocks() if block.lang == "console"]
        assert walk, "no console block in the README"
        for block in walk:
            assert block.shell is not None, "README line %d: console block without " \
                                            "<!-- shell N -->" % block.line_number
            if block.shell not in shells:
                cwd = readme.ROOT if block.shell in IN_REPOSITORY else scratch
                shells[block.shell] = Shell(tmux.open("s%d" % block.shell, env, cwd))
            shell = shells[block.shell]
            for item in readme.items(block):
                if item.command is not None:
                    command = readme.substitute(item.command, names)
                    shell.type(command)
                    if _long_running(item.command):
                        shell.expect_among(item.expected, names, 90)
                    else:
                        shell.expect_exactly(item.expected, names, 90)
                elif item.ctrl_c:
                    shell.terminal.ctrl_c()
                    shell.expect_among(item.expected, names, 60)
                    shell.wait_prompt(60)  # the command ended: its shell is back
                else:
                    shell.expect_among(item.expected, names, 60)
    finally:
        tmux.close()  # every terminal closed: SIGHUP to what still runs (the etcd members)
    assert_cleaned_up(sandbox)

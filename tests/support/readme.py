"""The README's code blocks, and matching a terminal's output against the README's.

A fenced block is ``Block(lang, lines, shell, line_number)``; ``shell`` is N for a block
right after an ``<!-- shell N -->`` comment.  In a ``console`` block, ``$ `` lines are
commands (a trailing ``\\`` continues one), ``^C`` is Ctrl-C, other lines are the output
expected after the item above them.

Output lines match with what varies from run to run made equal: runs of blanks, UUIDs, long
hex numbers (leases) and digits (ports, pids, times, TTLs); ``...`` in an expected line
stands for anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\w*)\s*$")
_SHELL = re.compile(r"^<!--\s*shell\s+(\d+)\s*-->\s*$")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
_DIGITS = re.compile(r"\d+")


@dataclass
class Block:
    lang: str
    lines: list[str]
    shell: int | None
    line_number: int


@dataclass
class Item:
    """One command (or Ctrl-C when ``command`` is None and ``ctrl_c``) and the output lines
    the README shows after it; an output-only item has neither."""

    command: str | None
    ctrl_c: bool = False
    expected: list[str] = field(default_factory=list)


def blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    found = []
    i = 0
    shell = None
    while i < len(lines):
        marker = _SHELL.match(lines[i])
        if marker:
            shell = int(marker.group(1))
        fence = _FENCE.match(lines[i])
        if fence:
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            found.append(Block(fence.group(1), body, shell, start + 1))
            shell = None
        elif lines[i].strip() and not marker:
            shell = None  # the marker must come right before its block
        i += 1
    return found


def items(block: Block) -> list[Item]:
    result: list[Item] = []
    lines = list(block.lines)
    while lines:
        line = lines.pop(0)
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and lines:
                command = command[:-1].rstrip() + " " + lines.pop(0).strip()
            result.append(Item(command))
        elif line.strip() == "^C":
            result.append(Item(None, ctrl_c=True))
        else:
            if not result:
                result.append(Item(None))
            result[-1].expected.append(line)
    return result


def normalize(line: str) -> str:
    line = UUID.sub("U", line)
    line = _HEX.sub("H", line)
    line = _DIGITS.sub("0", line)
    return " ".join(line.split())


def matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(normalize(part)) for part in expected.split("..."))
    return re.fullmatch(pattern, normalize(actual)) is not None


def learn(expected: str, actual: str, names: dict[str, str]) -> None:
    """README sample UUIDs -> the real ones, from a matching pair of lines."""
    samples, reals = UUID.findall(expected), UUID.findall(actual)
    if len(samples) == len(reals):
        names.update(zip(samples, reals))


def substitute(command: str, names: dict[str, str]) -> str:
    for sample, real in names.items():
        command = command.replace(sample, real)
    return command

"""What the command prints: results on stdout, notes and warnings on stderr, tables, JSON."""

from __future__ import annotations

import datetime
import json
import math
import sys
from typing import Any, Sequence

PROG = "hprose-cluster"


def out(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    note("warning: " + text)


def note(text: str) -> None:
    """A line on stderr for the person at the shell; lost, not raised, if the terminal is
    gone (a closed window must not turn a clean stop into an error)."""
    try:
        print("%s: %s" % (PROG, text), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    cells = [list(headers)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by the string JSON parsers of
    other languages will not choke on (``"Infinity"``, ``"-Infinity"``, ``"NaN"``): JSON has
    no such numbers, and Python's ``Infinity`` is not JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [finite(item) for item in value]
    return value


def jsonable(value: Any) -> Any:
    """What ``json.dumps`` cannot encode, as something close: hprose returns bytes, dates,
    and objects of classes it made up."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return finite(list(value))
    if hasattr(value, "__dict__"):
        return finite({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return repr(value)


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (``allow_nan=False``: never ``Infinity`` or ``NaN``)."""
    return json.dumps(finite(value), indent=indent, ensure_ascii=False, default=jsonable,
                      allow_nan=False)


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")

"""6. Decoding large string arguments: hprose 1.4.3's string reader against ours.

hprose 1.4.3 reads a string one byte at a time; ``hprose_cluster.compat`` replaces that with one
incremental UTF-8 decode (see its docstring, item 4).  Both readers decode the same serialized
strings here, in alternating rounds: ASCII and mixed text (2-, 3- and 4-byte characters) of
64 KB and 1 MB.  Every call to a server decodes its arguments this way, every client its result.
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import Any, Callable

from common import Row, Settings, median

import hprose
from hprose.io import HproseReader

from hprose_cluster import compat

compat.apply()
_ORIGINAL = HproseReader.__dict__["_HproseReader__readString"].__wrapped__


def _decode_with(reader_function: Callable[[HproseReader], str] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        reader = HproseReader(BytesIO(data[1:]))  # after the "s" tag
        if reader_function is None:
            return reader._HproseReader__readString()  # type: ignore[attr-defined]
        return reader_function(reader)
    return decode


def _seconds_per_decode(decode: Callable[[bytes], Any], data: bytes, budget: float) -> float:
    count, started = 0, time.perf_counter()
    while True:
        decode(data)
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return elapsed / count


def payload(etcd: str, settings: Settings, metrics_url: str = "") -> list[Row]:
    rows = []
    cases = {"ASCII": "x", "mixed": "aé中😀"}
    sizes = (64 * 1024, 1024 * 1024) if not settings.quick else (64 * 1024,)
    ours, theirs = _decode_with(None), _decode_with(_ORIGINAL)
    for name, unit in cases.items():
        for size in sizes:
            text = (unit * (size // len(unit.encode())))[: size]
            data = hprose.serialize(text)
            assert ours(data) == theirs(data) == text
            times: dict[str, list[float]] = {"hprose": [], "ours": []}
            budget = min(settings.round_s, 0.5)
            for round_ in range(max(3, settings.rounds // 3)):
                order = ("hprose", "ours") if round_ % 2 == 0 else ("ours", "hprose")
                for who in order:
                    decode = theirs if who == "hprose" else ours
                    times[who].append(_seconds_per_decode(decode, data, budget))
            slow, fast = median(times["hprose"]), median(times["ours"])
            rows.append(Row("6. payload", "decode a %d KB %s string: hprose 1.4.3 / ours"
                            % (len(data) // 1024, name),
                            "%.0fx faster (%.2f ms -> %.3f ms)"
                            % (slow / fast, slow * 1e3, fast * 1e3)))
    return rows

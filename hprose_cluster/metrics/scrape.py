"""Reading a server's metrics back: fetch ``/metrics`` and parse the text exposition format.

For ``hprose-cluster top``, which must work where prometheus-client is not installed: this
module imports only the standard library.  It reads what it needs (samples with labels and
values) and skips comments, timestamps and whatever it does not understand.
"""

from __future__ import annotations

import math
import urllib.request
from typing import Iterator

MAX_BYTES = 8 * 1024 * 1024  # a metrics page larger than this is not one of ours

Sample = tuple[str, dict[str, str], float]

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def fetch(url: str, timeout: float) -> str:
    """The exposition text at ``url``; OSError (``URLError`` is one) if it cannot be read."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        data = reply.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise OSError("%s sent more than %d bytes" % (url, MAX_BYTES))
    return data.decode("utf-8", "replace")


def _labels(text: str, start: int) -> tuple[dict[str, str], int]:
    """Parse ``name="value",...}`` from ``text[start:]``; returns the labels and the index
    after the closing brace.  ValueError if malformed."""
    labels: dict[str, str] = {}
    i = start
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i >= len(text):
            raise ValueError("unterminated labels")
        if text[i] == "}":
            return labels, i + 1
        equals = text.index("=", i)
        name = text[i:equals].strip()
        if text[equals + 1:equals + 2] != '"':
            raise ValueError("label value not quoted")
        i = equals + 2
        value = []
        while True:
            char = text[i]
            if char == "\\":
                value.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                value.append(char)
                i += 1
        labels[name] = "".join(value)


def parse(text: str) -> Iterator[Sample]:
    """Every sample of an exposition text as ``(name, labels, value)``."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            brace = line.find("{")
            space = line.find(" ")
            if brace != -1 and (space == -1 or brace < space):
                name = line[:brace]
                labels, end = _labels(line, brace + 1)
                rest = line[end:].split()
            else:
                name, *rest = line.split()
                labels = {}
            value = float(rest[0])
        except (ValueError, IndexError):
            continue
        if not math.isnan(value):
            yield name, labels, value


def server_totals(text: str, domain: str) -> dict[str, float]:
    """What ``top`` shows of one domain from a server's metrics: ``calls`` and ``errors``
    (totals of ``hprose_cluster_server_requests_total``) and ``in_flight``."""
    totals = {"calls": 0.0, "errors": 0.0, "in_flight": 0.0}
    for name, labels, value in parse(text):
        if labels.get("domain") != domain:
            continue
        if name == "hprose_cluster_server_requests_total":
            totals["calls"] += value
            if labels.get("outcome") == "error":
                totals["errors"] += value
        elif name == "hprose_cluster_server_in_flight":
            totals["in_flight"] += value
    return totals


__all__ = ["fetch", "parse", "server_totals", "Sample"]

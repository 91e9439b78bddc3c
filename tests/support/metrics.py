"""Reading metrics in tests: a fresh registry per test, values out of the exposition text,
and hello servers with a metrics port as real processes.

Values are always read from the text exposition (``generate_latest`` or a server's HTTP
port), parsed by prometheus-client's own parser: what a Prometheus server would see.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from typing import Any, Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hprose_cluster import metrics

from tests.support.cluster_procs import ServerProc

_SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_server.py")
# As cluster_procs does: the child dies with the test process (prctl PR_SET_PDEATHSIG).
_LAUNCH = ("import ctypes, runpy, signal, sys; "
           "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0); "
           "sys.argv[0] = %r; runpy.run_path(%r, run_name='__main__')"
           % (_SERVER_SCRIPT, _SERVER_SCRIPT))

# The client's metric names, spelled out as a dashboard would (a rename must fail the tests).
CALLS = "hprose_cluster_client_calls_total"
SECONDS = "hprose_cluster_client_call_seconds_count"
RETRIES = "hprose_cluster_client_retries_total"
EJECTIONS = "hprose_cluster_client_ejections_total"
NO_SERVER = "hprose_cluster_client_no_server_total"


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Objects created during the test record into this registry (and only they)."""
    previous = metrics.current_registry()
    fresh = CollectorRegistry()
    metrics.enable(fresh)
    try:
        yield fresh
    finally:
        if previous is None:
            metrics.disable()
        else:
            metrics.enable(previous)


def exposition(source: Any) -> str:
    """The text of a registry, or of a metrics URL."""
    if isinstance(source, str):
        with urllib.request.urlopen(source, timeout=10) as reply:
            return reply.read().decode()
    return generate_latest(source).decode()


def value(source: Any, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    text = source if isinstance(source, str) and not source.startswith("http") \
        else exposition(source)
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def present(source: Any, name: str, **labels: str) -> bool:
    text = exposition(source) if not isinstance(source, str) or source.startswith("http") \
        else source
    return any(sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
               for family in text_string_to_metric_families(text) for sample in family.samples)


def metrics_server_args(domain: str, etcd: str, transport: str = "tcp", ttl: int = 2,
                        heartbeat: float = 0.5) -> list[str]:
    """The command of a hello server with a metrics port, for ``ServerProc.args``."""
    return [sys.executable, "-c", _LAUNCH, "--transport", transport, "--domain", domain,
            "--etcd", etcd, "--ttl", str(ttl), "--heartbeat", str(heartbeat)]


def start_metrics_server(domain: str, etcd: str) -> ServerProc:
    """A started hello server process with a metrics port (its record carries the URL)."""
    proc = ServerProc(domain, etcd)
    proc.args = metrics_server_args(domain, etcd)
    return proc.start()

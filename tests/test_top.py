"""``hprose-cluster top``: three server processes under load, read through ``--once --json``
and in a real terminal (tmux); the etcd-only fallback; the exposition parser it uses."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from typing import Any, Iterator

import pytest
from hprose.common import HproseException
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from hprose_cluster import ClusterClient, Registrar, ServerInfo
from hprose_cluster.embedded import free_port
from hprose_cluster.metrics.scrape import parse, server_totals

from tests.support.cluster_procs import Load, ServerProc, wait_until
from tests.support.metrics import start_metrics_server

pytestmark = pytest.mark.timeout(180)

COMMAND = [sys.executable, "-m", "hprose_cluster", "top"]


def _top(etcd: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(COMMAND + ["--etcd", etcd.endpoint, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def loaded(etcd: Any, domain: str) -> Iterator[dict[str, Any]]:
    """Three metrics-serving hello server processes, a client calling hello and fail on
    them round-robin from two threads."""
    procs: list[ServerProc] = []
    try:
        for _ in range(3):
            procs.append(start_metrics_server(domain, etcd.endpoint))
        with ClusterClient(domain, etcd=etcd.endpoint, selector="round-robin") as client:
            assert client.discovery.wait_for_servers(10, count=3)

            def call() -> None:
                client.hello("top")
                try:
                    client.fail()
                except HproseException:
                    pass

            with Load(call, threads=2, max_seconds=120, pause=0.005) as load:
                assert load.wait_calls(20)
                yield {"procs": procs, "client": client, "load": load}
            assert not load.failures, load.describe_failures()
    finally:
        for proc in procs:
            proc.close()


def test_once_json_under_load(etcd: Any, domain: str, loaded: dict[str, Any]) -> None:
    done = _top(etcd, domain, "--once", "--json", "--interval", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["domain"] == domain and report["interval"] == 1
    rows = report["servers"]
    assert sorted(r["url"] for r in rows) == sorted(p.url for p in loaded["procs"])
    for row in rows:
        assert row["metrics"] == "ok" and row["metrics_url"].startswith("http://127.0.0.1:")
        assert 0 <= row["lease_ttl"] <= 2
        assert row["calls_per_s"] > 0 and row["errors_per_s"] > 0
        # every other call is fail(): about half the requests are errors
        assert row["errors_per_s"] < row["calls_per_s"]
        assert 0 < row["errors_total"] < row["calls_total"]
        assert row["in_flight"] >= 0
        assert row["domain"] == domain and len(row["uuid"]) == 36 and row["cpu"] >= 1


def test_once_table_and_every_domain(etcd: Any, domain: str, loaded: dict[str, Any]) -> None:
    done = _top(etcd, "--once", "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if domain in line]
    assert len(lines) == 3
    assert done.stdout.splitlines()[0].split()[:3] == ["DOMAIN", "UUID", "URL"]
    for line in lines:
        assert line.split()[-1] == "ok"


def test_fallback_to_what_etcd_shows(etcd: Any, domain: str) -> None:
    plain = ServerInfo(domain, "tcp4://127.0.0.1:%d" % free_port())
    gone = ServerInfo(domain, "tcp4://127.0.0.1:%d" % free_port(),
                      extra={"Metrics": "http://127.0.0.1:%d/metrics" % free_port()})
    with Registrar(plain, etcd=etcd.endpoint, ttl=30, heartbeat=5), \
            Registrar(gone, etcd=etcd.endpoint, ttl=30, heartbeat=5):
        done = _top(etcd, domain, "--once", "--json", "--interval", "0.2")
        assert done.returncode == 0, done.stderr
        rows = {row["uuid"]: row for row in json.loads(done.stdout)["servers"]}
        assert rows[plain.uuid]["metrics"] is None and rows[plain.uuid]["metrics_url"] is None
        assert rows[gone.uuid]["metrics"] == "unreachable"
        for row in rows.values():
            assert 20 <= row["lease_ttl"] <= 30
            assert row["calls_per_s"] is None and row["in_flight"] is None
        table = _top(etcd, domain, "--once", "--interval", "0.2")
        assert plain.uuid[:8] in table.stdout and "unreachable" in table.stdout


def test_empty_domain_and_bad_input(etcd: Any, domain: str) -> None:
    done = _top(etcd, domain, "--once", "--json", "--interval", "0.1")
    assert done.returncode == 0 and json.loads(done.stdout)["servers"] == []
    assert _top(etcd, "no/such", "--once").returncode == 2
    bad = _top(etcd, domain, "--once", "--interval", "0")
    assert bad.returncode == 2 and "--interval" in bad.stderr


def test_live_json_lines_until_sigterm(etcd: Any, domain: str, loaded: dict[str, Any]) -> None:
    proc = subprocess.Popen(COMMAND + ["--etcd", etcd.endpoint, domain, "--json",
                                       "--interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        samples = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert all(len(sample["servers"]) == 3 for sample in samples)
        # rates from the second refresh on
        assert all(row["calls_per_s"] > 0 for row in samples[-1]["servers"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_live_in_a_terminal(etcd: Any, domain: str, loaded: dict[str, Any]) -> None:
    """The live view in a real terminal: refreshed in place (one header on screen however
    many refreshes), a row per server with calls/s, Ctrl-C ends it with status 0."""
    socket_name = "hprose-top-%s" % uuid.uuid4().hex[:8]
    tmux = ["tmux", "-L", socket_name]
    env = "PYTHONPATH=%s" % shlex.quote(os.environ.get("PYTHONPATH", ""))
    command = "env %s %s --etcd %s %s --interval 0.5; echo EXITED $?; sleep 60" % (
        env, " ".join(map(shlex.quote, COMMAND)), etcd.endpoint, domain)
    subprocess.run(tmux + ["new-session", "-d", "-s", "top", "-x", "150", "-y", "40", command],
                   check=True, timeout=30)
    screens: list[str] = []

    def screen() -> str:
        text = subprocess.run(tmux + ["capture-pane", "-p", "-t", "top"], capture_output=True,
                              text=True, timeout=30).stdout
        screens.append(text)
        return text

    def rows_moving() -> bool:
        rows = [line.split() for line in screen().splitlines()
                if any(p.url in line for p in loaded["procs"])]
        return len(rows) == 3 and all(r[-1] == "ok" and r[4] != "-" and float(r[4]) > 0
                                      for r in rows)

    try:
        assert wait_until(rows_moving, 60, interval=0.2), screens[-1:]
        first = [line for line in screens[-1].splitlines() if "hprose-cluster top:" in line]
        assert wait_until(lambda: [line for line in screen().splitlines()
                                   if "hprose-cluster top:" in line] != first, 20)
        assert wait_until(lambda: screen().count("hprose-cluster top:") == 1
                          and screens[-1].count("CALLS/S") == 1, 10), screens[-1]
        subprocess.run(tmux + ["send-keys", "-t", "top", "C-c"], check=True, timeout=30)
        assert wait_until(lambda: "EXITED 0" in screen(), 20), screens[-1]
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=30)  # ours alone


def test_parse_reads_prometheus_text() -> None:
    registry = CollectorRegistry()
    requests = Counter("hprose_cluster_server_requests_total", "r",
                       ("domain", "method", "outcome"), registry=registry)
    in_flight = Gauge("hprose_cluster_server_in_flight", "f", ("domain",), registry=registry)
    requests.labels("a.svc", 'we"ird\\name\n', "ok").inc(5)
    requests.labels("a.svc", "x", "error").inc(2)
    requests.labels("b.svc", "x", "ok").inc(100)
    in_flight.labels("a.svc").set(3)
    text = generate_latest(registry).decode()
    samples = list(parse(text))
    assert ("hprose_cluster_server_requests_total",
            {"domain": "a.svc", "method": 'we"ird\\name\n', "outcome": "ok"}, 5.0) in samples
    assert server_totals(text, "a.svc") == {"calls": 7.0, "errors": 2.0, "in_flight": 3.0}
    assert server_totals(text, "b.svc") == {"calls": 100.0, "errors": 0.0, "in_flight": 0.0}
    assert list(parse("garbage {\nname{a=\"1\" 2\nok 1 1700000000\n")) == [("ok", {}, 1.0)]

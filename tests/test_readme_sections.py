"""The README's asyncio and Metrics blocks stay true: the asyncio line server answers through
a real hello server, the metrics_port server's record names a /metrics that serves, the
Prometheus scrape config points where that server serves, the jq pipeline writes the
file_sd targets, and the ``top`` screen shown is the one the command prints."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.metrics.scrape import fetch
from tests.support import readme
from tests.support.cli import COMMAND, env as clean_env
from tests.support.gunicorn import wait_until
from tests.support.procs import stop_process

pytestmark = pytest.mark.timeout(180)

DOMAIN = "tcp.hello.server"  # the README's domain; each test has an etcd of its own


def python_block(name: str) -> str:
    for block in readme.blocks():
        if block.lang == "python" and block.lines[0].startswith("# %s:" % name):
            return "\n".join(block.lines) + "\n"
    raise AssertionError("no python block named %r" % name)


def _records(endpoint: str) -> list[dict[str, Any]]:
    with EtcdConnection(EtcdConfig(endpoint, timeout=15)) as connection:
        return [json.loads(kv.value) for kv in connection.get_prefix("hprose-service/%s/"
                                                                      % DOMAIN).kvs]


def test_the_asyncio_snippet_answers_through_the_domain(etcd_factory, tmp_path):
    server_etcd = etcd_factory()
    environment = clean_env(server_etcd.endpoint)
    port = free_port()
    code = python_block("asyncio")
    assert '"127.0.0.1", 8080' in code
    (tmp_path / "lines.py").write_text(code.replace("8080", str(port)))
    hello = subprocess.Popen([sys.executable, str(readme.ROOT / "examples/hello/server.py")],
                             env=environment, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = None
    try:
        wait_until(lambda: _records(server_etcd.endpoint), 30, "the hello server registered")
        lines = subprocess.Popen([sys.executable, str(tmp_path / "lines.py")], env=environment,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)

        def answer() -> str | None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                    conn.sendall(b"bob\n")
                    return conn.makefile("rb").readline().decode()
            except OSError:
                assert lines is not None and lines.poll() is None, lines.stderr.read()
                return None

        assert wait_until(answer, 30, "the asyncio line server answered") == "Hello bob\n"
    finally:
        if lines is not None:
            stop_process(lines, signal.SIGINT)
        stop_process(hello)


@pytest.fixture
def metrics_server(etcd_factory, tmp_path) -> Iterator[dict[str, Any]]:
    """The metrics_port snippet on loopback and free ports, registered in an etcd of its own."""
    server_etcd = etcd_factory()
    port, metrics_port = free_port(), free_port()
    code = python_block("metrics_port")
    assert '"0.0.0.0", 4321, metrics_port=9100' in code
    code = code.replace('"0.0.0.0", 4321, metrics_port=9100',
                        '"127.0.0.1", %d, metrics_port=%d' % (port, metrics_port))
    (tmp_path / "metrics_server.py").write_text(code)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "metrics_server.py")],
                            env=clean_env(server_etcd.endpoint), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        records = wait_until(lambda: _records(server_etcd.endpoint), 30, "registered")
        yield {"etcd": server_etcd, "record": records[0], "port": port,
               "metrics_port": metrics_port}
        stop_process(proc)
        assert proc.returncode == 0
        assert _records(server_etcd.endpoint) == []
    finally:
        stop_process(proc)


def test_the_metrics_port_record_names_a_metrics_url_that_serves(metrics_server):
    record = metrics_server["record"]
    assert record["ServerUrl"] == "tcp4://127.0.0.1:%d" % metrics_server["port"]
    assert record["Metrics"] == "http://127.0.0.1:%d/metrics" % metrics_server["metrics_port"]
    assert "hprose_cluster_server_requests_total" in fetch(record["Metrics"], 10)


def test_the_scrape_config_points_where_the_servers_serve():
    block = next(b for b in readme.blocks() if b.lang == "yaml")
    text = "\n".join(block.lines)
    assert re.search(r"^\s+metrics_path: /metrics$", text, re.M)
    targets = re.search(r"targets: (\[.*\])", text)
    assert targets is not None
    ports = {target.rsplit(":", 1)[1] for target in json.loads(targets.group(1))}
    assert ports == {"9100"} and "metrics_port=9100" in python_block("metrics_port")


def test_the_jq_pipeline_writes_the_file_sd_targets(metrics_server, tmp_path):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    scrape = [b for b in readme.blocks() if b.lang == "bash"][1]
    command = " ".join(line.rstrip("\\").strip() for line in scrape.lines)
    assert command.startswith("hprose-cluster top tcp.hello.server ")
    output = tmp_path / "hprose.json"
    command = command.replace("/etc/prometheus/hprose.json", str(output))
    command = " ".join(COMMAND) + command[len("hprose-cluster"):]
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          text=True, timeout=60,
                          env=clean_env(metrics_server["etcd"].endpoint))
    assert done.returncode == 0, done.stderr
    assert json.loads(output.read_text()) == [
        {"targets": ["127.0.0.1:%d" % metrics_server["metrics_port"]]}]


def test_the_top_screen_is_what_top_prints(metrics_server):
    """The live view over a server under calls: its second screen has the rates."""
    from hprose_cluster import ClusterClient

    sample = next(b for b in readme.blocks()
                  if b.lang == "" and b.lines[0].startswith("$ hprose-cluster top "))
    command, head, blank, columns, row = sample.lines[:5]
    assert blank == ""
    endpoint = metrics_server["etcd"].endpoint
    stop = threading.Event()

    def calls() -> None:
        with ClusterClient(DOMAIN, etcd=endpoint, timeout=10) as client:
            for _ in range(20000):  # bounded: about 60 s at most on a busy machine
                if stop.wait(0.005):
                    return
                client.hello("top")

    caller = threading.Thread(target=calls, daemon=True)
    caller.start()
    proc = subprocess.Popen(COMMAND + command[len("$ hprose-cluster "):].split(),
                            env=clean_env(endpoint), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            shown.append(line.rstrip("\n"))

    def screen_with_rates() -> list[str] | None:
        lines_now = list(shown)
        for i, line in enumerate(lines_now):
            if not line.startswith("hprose-cluster top:"):
                continue
            lines = lines_now[i:i + 4]
            if len(lines) == 4 and re.search(r"\s\d+\.\d\s", lines[3]):
                return lines
        return None

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        screen = wait_until(screen_with_rates, 60, "a screen of top with calls/s")
    finally:
        stop.set()
        stop_process(proc)
        reader.join(10)
        caller.join(30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert isinstance(screen, list)
    # the etcd endpoint, the time and the port differ: digits are matched as digits
    assert readme.matches(head, screen[0]), (head, screen[0])
    assert screen[1] == "" and readme.matches(columns, screen[2]), screen
    expected, actual = row.split(), screen[3].split()
    assert len(expected) == len(actual) and re.fullmatch(r"[0-9a-f]{8}", actual[0]), actual
    assert all(readme.matches(e, a) for e, a in zip(expected[1:], actual[1:])), (row, screen[3])

"""Metrics under gunicorn: workers count requests in prometheus-client's multiprocess mode,
the master serves the sum of all workers with ``metrics.serve()`` (``when_ready``) and
forgets dead workers with ``metrics.child_exit()``: a real gunicorn with two workers."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hprose_cluster.embedded import free_port
from hprose_cluster.transport.base import encode_request

from tests.support.cluster_procs import wait_until
from tests.support.metrics import value
from tests.support.procs import stop_process

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None,
                                reason="needs gunicorn")

DOMAIN = "gunicorn.hello.server"

_APP = textwrap.dedent("""
    import hprose
    from hprose_cluster import metrics

    def hello(name):
        return "Hello %s" % name

    app = hprose.HproseHttpService()
    app.addFunction(hello)
    metrics.instrument_service(app, {domain!r})
""")

_CONFIG = textwrap.dedent("""
    from hprose_cluster import metrics

    def when_ready(server):
        server.metrics_endpoint = metrics.serve({port}, "127.0.0.1")

    def child_exit(server, worker):
        metrics.child_exit(worker.pid)
""")


def _hello(port: int, i: int) -> None:
    # plain urllib: gunicorn's sync workers answer "Connection: close" and chunked
    request = urllib.request.Request("http://127.0.0.1:%d/" % port, method="POST",
                                     data=encode_request("hello", [str(i)], False, False))
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.read() == ('Rs%d"Hello %d"z' % (6 + len(str(i)), i)).encode()


def _children(pid: int) -> set[int]:
    with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
        return {int(child) for child in children.read().split()}


def test_master_serves_the_sum_of_its_workers(tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (tmp_path / "hello_app.py").write_text(_APP.format(domain=DOMAIN))
    metrics_port, port = free_port(), free_port()
    (tmp_path / "conf.py").write_text(_CONFIG.format(port=metrics_port))
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b",
                             "127.0.0.1:%d" % port, "-c", str(tmp_path / "conf.py"),
                             "--chdir", str(tmp_path), "hello_app:app"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = "http://127.0.0.1:%d/metrics" % metrics_port

    def up() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2).close()
            return True
        except (urllib.error.URLError, OSError):
            return False

    try:
        assert wait_until(up, 30, interval=0.2), "gunicorn did not come up"
        for i in range(15):
            _hello(port, i)
        # SIGKILL a worker that served: gunicorn starts another; what it counted stays
        served = {int(f.stem.rsplit("_", 1)[1]) for f in multiproc.glob("counter_*.db")}
        victim = sorted(served & _children(proc.pid))[0]
        assert list(multiproc.glob("gauge_livesum_%d.db" % victim))  # its in-flight gauge
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: victim not in _children(proc.pid)
                          and len(_children(proc.pid)) == 2, 30)
        # child_exit dropped the dead worker's live gauge (in flight) file
        assert wait_until(lambda: not list(multiproc.glob("gauge_livesum_%d.db" % victim)), 10)
        for i in range(15, 30):
            _hello(port, i)
        assert value(url, "hprose_cluster_server_requests_total", domain=DOMAIN,
                     method="hello", outcome="ok") == 30
        assert value(url, "hprose_cluster_server_request_seconds_count", domain=DOMAIN,
                     method="hello") == 30
        assert value(url, "hprose_cluster_server_in_flight", domain=DOMAIN) == 0
    finally:
        stop_process(proc)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]


def test_serve_without_metrics_is_a_clear_error(monkeypatch: Any) -> None:
    from hprose_cluster import ConfigError, metrics

    previous = metrics.current_registry()
    metrics.disable()
    try:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        with pytest.raises(ConfigError, match="metrics are off"):
            metrics.serve(0)
    finally:
        metrics.enable(previous) if previous is not None else None

"""Without prometheus-client (or with metrics disabled) nothing changes and it is never
imported: checked in fresh interpreters, with real servers, clients and etcd."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

# A fresh interpreter: a server, a client, calls, a record, then what was imported.
_SCRIPT = textwrap.dedent("""
    from hprose_cluster import ClusterClient, metrics
    from hprose_cluster.demo import make_server
    from hprose_cluster.errors import ConfigError
    # before
    server = make_server("tcp", sys.argv[1], etcd=sys.argv[2], ttl=2, heartbeat=0.5)
    server.start(block=False)
    try:
        with ClusterClient(sys.argv[1], etcd=sys.argv[2]) as client:
            assert client.discovery.wait_for_servers(10)
            answers = [client.hello("off") for _ in range(3)]
            extra = dict(client.servers()[0].extra)
        try:
            make_server("tcp", sys.argv[1], etcd=sys.argv[2], metrics_port=0)
            port_error = None
        except ConfigError as error:
            port_error = str(error)
    finally:
        server.stop(drain_timeout=1)
    print(json.dumps({"answers": answers, "extra": extra, "enabled": metrics.enabled(),
                      "port_error": port_error,
                      "imported": sorted(m for m in sys.modules if m.startswith("prometheus"))}))
""")

_HIDE = textwrap.dedent("""
    import sys
    class _NotInstalled:
        # As if prometheus-client were not installed: every import of it fails.
        def find_spec(self, name, path=None, target=None):
            if name == "prometheus_client" or name.startswith("prometheus_client."):
                raise ModuleNotFoundError("No module named %r" % name, name=name)
            return None
    sys.meta_path.insert(0, _NotInstalled())
""")


def _run(etcd: Any, domain: str, setup: str = "", before: str = "") -> dict[str, Any]:
    import json

    code = "import json, sys\n" + setup + _SCRIPT.replace("# before", before)
    done = subprocess.run([sys.executable, "-c", code, domain, etcd.endpoint],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_the_extra_nothing_is_imported(etcd: Any, domain: str) -> None:
    result = _run(etcd, domain, setup=_HIDE)
    assert result["answers"] == ["Hello off"] * 3
    assert result["imported"] == []
    assert result["enabled"] is False
    assert result["extra"] == {}  # no Metrics field in the record
    assert "metrics_port" in result["port_error"] and "pip install" in result["port_error"]


def test_disabled_before_use_nothing_is_imported(etcd: Any, domain: str) -> None:
    result = _run(etcd, domain, before="metrics.disable()")
    assert result["answers"] == ["Hello off"] * 3
    assert result["imported"] == []
    assert result["enabled"] is False
    assert result["extra"] == {}


def test_installed_means_on_by_default(etcd: Any, domain: str) -> None:
    result = _run(etcd, domain)
    assert result["answers"] == ["Hello off"] * 3
    assert "prometheus_client" in result["imported"]
    assert result["enabled"] is True
    assert result["port_error"] is None


def test_importing_the_package_imports_nothing() -> None:
    code = ("import sys, hprose_cluster, hprose_cluster.metrics, hprose_cluster.cli.commands.top, "
            "hprose_cluster.cli; print([m for m in sys.modules if m.startswith('prometheus')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_enable_without_the_extra_is_a_clear_error() -> None:
    code = _HIDE + textwrap.dedent("""
        from hprose_cluster import metrics
        from hprose_cluster.errors import ConfigError
        try:
            metrics.enable()
        except ConfigError as error:
            print("error:", error)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'hprose-cluster[metrics]'" in done.stdout


@pytest.mark.parametrize("name", ["metrics", "cli.commands.top"])
def test_modules_load_without_prometheus(name: str) -> None:
    code = _HIDE + "import hprose_cluster.%s\nprint('ok')\n" % name
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

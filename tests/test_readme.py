"""The README's other code blocks stay true: the Python snippets run, the systemd unit stops
its server the way it says, the set-up and development commands name what exists, and the
variables it lists are the ones the code reads.  (The console blocks: test_readme_walk.py.)"""

from __future__ import annotations

import configparser
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import hprose_cluster.etcd as etcd_module
import hprose_cluster.gunicorn as gunicorn_module
from hprose_cluster.embedded import free_port
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from tests.support import readme
from tests.support.cli import env as clean_env
from tests.support.gunicorn import wait_until

pytestmark = pytest.mark.timeout(180)

PYPROJECT = tomllib.loads((readme.ROOT / "pyproject.toml").read_text())


def _named(lang: str) -> dict[str, readme.Block]:
    """Blocks of ``lang`` by the name in their first line's comment (``# server.py: ...``)."""
    found = {}
    for block in readme.blocks():
        if block.lang == lang:
            first = block.lines[0]
            assert first.startswith("# "), "README line %d: a %s block must start with a " \
                                           "comment naming it" % (block.line_number, lang)
            found[re.split(r"[:,]", first[2:])[0].strip()] = block
    return found


def test_every_code_block_is_checked_by_a_test():
    python, ini = _named("python"), _named("ini")
    # asyncio and metrics_port: tests/test_readme_sections.py
    assert set(python) == {"server.py", "client.py", "gunicorn.conf.py", "logging set-up",
                           "asyncio", "metrics_port"}
    assert set(ini) == {"/etc/systemd/system/hello.service"}
    for block in readme.blocks():
        assert block.lang in ("python", "ini", "console", "bash", "yaml", ""), block
        if block.lang == "console":
            assert block.shell is not None, block  # run by the walk
    # the set-up and the development commands, checked below; the scrape pipeline and the
    # yaml scrape config in tests/test_readme_sections.py
    bash = [block.lines for block in readme.blocks() if block.lang == "bash"]
    assert len(bash) == 3
    assert len([block for block in readme.blocks() if block.lang == "yaml"]) == 1


def _records(endpoint: str, domain: str) -> list:
    with EtcdConnection(EtcdConfig(endpoint, timeout=15)) as connection:
        return list(connection.get_prefix("hprose-service/%s/" % domain).kvs)


def test_the_server_and_client_snippets_run(etcd_factory, tmp_path):
    server_etcd = etcd_factory()
    blocks = _named("python")
    for name in ("server.py", "client.py"):
        (tmp_path / name).write_text("\n".join(blocks[name].lines) + "\n")
    environment = clean_env(server_etcd.endpoint)
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py")], env=environment,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _records(server_etcd.endpoint, "tcp.hello.server"), 30,
                   "the snippet server registered")
        client = subprocess.run([sys.executable, str(tmp_path / "client.py")], env=environment,
                                capture_output=True, text=True, timeout=60)
        assert (client.returncode, client.stdout) == (0, "Hello world\n"), client.stderr
        server.send_signal(signal.SIGTERM)  # "until Ctrl-C or SIGTERM, then leave and stop"
        assert server.wait(30) == 0
        assert _records(server_etcd.endpoint, "tcp.hello.server") == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_the_systemd_unit_stops_its_server_as_it_says(etcd_factory):
    """ExecStart with the example server, Environment with a test etcd, then KillSignal:
    the server leaves the registry and exits 0 well before TimeoutStopSec."""
    server_etcd = etcd_factory()
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # keep the keys' case
    unit.read_string("\n".join(_named("ini")["/etc/systemd/system/hello.service"].lines))
    service = unit["Service"]
    python, script = service["ExecStart"].split()
    assert (python, script) == ("/usr/bin/python3", "/opt/hello/server.py")
    name, _, value = service["Environment"].partition("=")
    assert name == "HPROSE_CLUSTER_ETCD" and len(value.split(",")) == 3  # every member
    stop_signal = getattr(signal, service["KillSignal"])
    timeout = float(service["TimeoutStopSec"])
    assert timeout > 0.5 + 10  # drain_delay + the drain timeout of a blocking start()
    proc = subprocess.Popen([sys.executable, str(readme.ROOT / "examples/hello/server.py")],
                            env=clean_env(server_etcd.endpoint), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _records(server_etcd.endpoint, "tcp.hello.server"), 30,
                   "registered")
        started = time.monotonic()
        proc.send_signal(stop_signal)
        assert proc.wait(timeout) == 0
        assert time.monotonic() - started < timeout / 2
        assert _records(server_etcd.endpoint, "tcp.hello.server") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_gunicorn_config_snippet_registers(etcd, tmp_path, domain):
    from tests.support.gunicorn import Gunicorn

    port = free_port()
    text = "\n".join(_named("python")["gunicorn.conf.py"].lines)
    assert 'bind = "127.0.0.1:8000"' in text
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(text.replace("127.0.0.1:8000", "127.0.0.1:%d" % port) + "\n")
    server = Gunicorn(tmp_path / "app", etcd.endpoint, domain, ["-c", str(config)])
    try:
        wait_until(lambda: _records(etcd.endpoint, domain), 30, "registered")
        server.signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert _records(etcd.endpoint, domain) == []
    finally:
        server.close()


def test_the_logging_snippet_shows_warnings_only():
    code = "\n".join(_named("python")["logging set-up"].lines) + (
        "\nlogging.getLogger('hprose_cluster.x').info('quiet')"
        "\nlogging.getLogger('hprose_cluster.x').warning('loud')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert "quiet" not in result.stderr
    assert re.search(r"^\S+ \S+ WARNING hprose_cluster.x: loud$", result.stderr, re.M)


def test_the_set_up_commands_name_what_exists():
    setup, _, development = [block.lines for block in readme.blocks() if block.lang == "bash"]
    commands = [line.split("#")[0].strip() for line in setup]
    assert commands == ['pip install -e ".[embedded]" && python examples/hello/demo.py',
                        'pip install -e ".[test]" && python -m pytest']
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"embedded", "test", "gunicorn"} <= set(extras)
    assert (readme.ROOT / "examples/hello/demo.py").is_file()
    # The demo half runs as the README says (the pip half changes the environment, and the
    # tests half is this very run).
    demo = subprocess.run([sys.executable, "examples/hello/demo.py"], cwd=readme.ROOT,
                          env=clean_env(None), capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0 and "0 failed calls" in demo.stdout, demo.stdout + demo.stderr
    assert [line.split("#")[0].strip() for line in development] == [
        "python -m pytest", 'python -m pytest -m "not slow"']
    markers = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.startswith("slow:") for marker in markers)


def test_the_variables_the_readme_lists_are_the_ones_the_code_reads():
    text = readme.README.read_text()
    listed = set(re.findall(r"`(HPROSE_CLUSTER_[A-Z_]+)`", text))
    known = {getattr(module, name) for module in (etcd_module, gunicorn_module)
             for name in dir(module) if name.startswith("ENV_")}
    # _CERT/_KEY/_PASSWORD are written as suffixes in places: what is listed whole must exist
    assert listed <= known, listed - known
    table = set(re.findall(r"^\| `(HPROSE_CLUSTER_[A-Z_]+)` \|", text, re.M))
    assert table == {getattr(etcd_module, name) for name in dir(etcd_module)
                     if name.startswith("ENV_")}

"""The command as a whole: usage errors, help, an unreachable or silent etcd."""

from __future__ import annotations

import subprocess
import time

import pytest

from hprose_cluster.cli import build_parser
from hprose_cluster.cli import main as cli_main
from hprose_cluster.cli.commands import COMMANDS
from hprose_cluster.embedded import free_port
from tests.support.cli import COMMAND, run

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ls", "bad domain"], "hprose-cluster: error: domain 'bad domain' contains ' '"),
    (["get", "a.b", "x/y"], "hprose-cluster: error: UUID 'x/y' contains '/'"),
    (["register", "a.b", "ftp://h:1"], "hprose-cluster: error: ServerUrl 'ftp://h:1' has scheme"),
    (["register", "a.b", "tcp://h:1", "--cpu", "0"], "hprose-cluster: error: CPU must be"),
    (["register", "a.b", "tcp://h:1", "--ttl", "2", "--heartbeat", "3"], "heartbeat must be"),
    (["--etcd", "ftp://h:1", "ls"], "scheme must be http or https"),
    (["call", "a.b", "m", "--timeout", "x"], "invalid float value: 'x'"),
])
def test_usage_errors_exit_2_with_one_clear_line(etcd, args, message):
    result = run(etcd.endpoint, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_etcd_is_named():
    port = free_port()  # nobody listens here
    endpoint = "127.0.0.1:%d" % port
    for args in (["ls"], ["watch", "x.y"], ["call", "x.y", "hello"]):
        result = run(endpoint, *args, timeout=60)
        assert result.returncode == 1, (args, result)
        assert result.stderr.startswith("hprose-cluster: error: ")
        assert endpoint in result.stderr and "Connection refused" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_silent_etcd_fails_within_the_timeout(etcd_factory, capsys):
    """A paused (SIGSTOPped) etcd accepts connections and never answers: every command must
    give up after --timeout, naming the endpoint.  Run in-process so that the bound measures
    the command, not the interpreter start on a busy machine."""
    server = etcd_factory()
    server.pause()
    try:
        for args in (["ls"], ["ls", "x.y"], ["get", "x.y", "u"], ["watch", "x.y"],
                     ["watch"], ["call", "x.y", "hello"]):
            started = time.monotonic()
            code = cli_main(["--etcd", server.endpoint, "--timeout", "1"] + args)
            elapsed = time.monotonic() - started
            err = capsys.readouterr().err
            assert code == 1, (args, err)
            assert err.startswith("hprose-cluster: error: ") and server.endpoint in err, err
            assert elapsed < 1 + 4, (args, elapsed)  # the timeout plus slack, not a hang
    finally:
        server.resume()


def test_every_subcommand_has_help_with_an_example():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) == {command.name for command in COMMANDS}
    assert {"ls", "get", "watch", "call", "register", "etcd", "demo", "top"} <= set(subparsers)
    for name, sub in subparsers.items():
        text = sub.format_help()
        assert "example:" in text and "hprose-cluster %s" % name in text, name
    shown = subprocess.run(COMMAND + ["watch", "--help"], capture_output=True, text=True,
                           timeout=30)
    assert shown.returncode == 0 and "hprose-cluster watch tcp.hello.server" in shown.stdout


def test_version_is_the_package_version_and_the_metadata_version():
    import tomllib
    from pathlib import Path

    import hprose_cluster

    shown = subprocess.run(COMMAND + ["--version"], capture_output=True, text=True, timeout=30)
    assert (shown.returncode, shown.stdout) == (0, "hprose-cluster %s\n"
                                                % hprose_cluster.__version__)
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml")
                            .read_text())["project"]
    assert project["version"] == hprose_cluster.__version__
    assert project["authors"] and project["license"] == {"text": "MIT"}
    license_text = (Path(__file__).resolve().parents[2] / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "hprose-cluster authors" in license_text

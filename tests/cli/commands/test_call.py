"""``hprose-cluster call`` against real servers."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run

pytestmark = pytest.mark.timeout(120)


def test_call_prints_results_and_reports_remote_errors(cluster, etcd):
    hello = run(etcd.endpoint, "call", cluster["tcp"], "hello", "world")
    assert (hello.returncode, hello.stdout, hello.stderr) == (0, "Hello world\n", "")

    total = run(etcd.endpoint, "call", cluster["http"], "sum", "1", "2", "--json")
    assert (total.returncode, json.loads(total.stdout)) == (0, 3)

    # A JSON string argument stays a string: "42" is not the number 42.
    quoted = run(etcd.endpoint, "call", cluster["tcp"], "hello", '"42"', "--json",
                 "--idempotent", "--timeout", "5")
    assert (quoted.returncode, json.loads(quoted.stdout)) == (0, "Hello 42")

    failed = run(etcd.endpoint, "call", cluster["tcp"], "fail")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.strip() == ("hprose-cluster: error: fail failed on domain %r: boom"
                                     % cluster["tcp"])

    debug = run(etcd.endpoint, "call", cluster["tcp"], "fail", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr

"""``hprose-cluster demo``: the hello demo, run to the end."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.cli import COMMAND

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
def test_demo_subcommand_runs_without_a_failed_call():
    result = subprocess.run(COMMAND + ["demo", "--rounds", "2"], capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed calls" in result.stdout

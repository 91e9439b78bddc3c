"""A network namespace of a test's own, with only loopback up.

Commands that use fixed ports (``hprose-cluster etcd`` on its defaults 2379/2380, the README
walk) run there, so other tests and other users of the machine never collide with them.
Needs ``unshare`` (root, or unprivileged user namespaces) and ``ip``; tests skip otherwise.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest

_UP = "ip link set lo up"


@functools.lru_cache(maxsize=None)
def _prefix() -> tuple[str, ...] | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for prefix in (("unshare", "-n"), ("unshare", "-rn")):
        try:
            probe = subprocess.run(list(prefix) + ["sh", "-c", _UP], capture_output=True,
                                   timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def prefix() -> list[str]:
    """The command prefix entering a new namespace (the command must bring ``lo`` up: use
    ``wrap()``); skips the test where namespaces are not available."""
    found = _prefix()
    if found is None:
        pytest.skip("no network namespace available (unshare -n / -rn, ip)")
    return list(found)


def wrap(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace, loopback up first."""
    return prefix() + ["sh", "-c", _UP + ' && exec "$@"', "netns"] + argv

"""Helpers for the tests of the embedded etcd servers: an etcd client, retries, process checks.

The client is built as ETCD.md prescribes; the process checks read /proc (no psutil).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, TypeVar

import etcd3

T = TypeVar("T")


def make_client(*endpoints: str, timeout: float = 5) -> etcd3.MultiEndpointEtcd3Client:
    """The client construction ETCD.md prescribes (a failed endpoint is retried after 1 s)."""
    eps = []
    for endpoint in endpoints:
        host, port = endpoint.rsplit(":", 1)
        eps.append(etcd3.Endpoint(host, int(port), secure=False, time_retry=1.0))
    return etcd3.MultiEndpointEtcd3Client(eps, failover=True, timeout=timeout)


def eventually(fn: Callable[[], T], timeout: float = 10, interval: float = 0.1) -> T:
    """fn() once it stops raising; its last exception after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (checked in /proc, no psutil)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True

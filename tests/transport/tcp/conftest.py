"""Fixtures of the TCP transport tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from hprose_cluster.transport.tcp import TcpServer

from support.tcp import make_server


@pytest.fixture
def server() -> Iterator[TcpServer]:
    server = make_server()
    server.start(block=False)
    yield server
    server.stop(drain_timeout=2)

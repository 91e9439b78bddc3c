"""Fixtures of the TLS tests: a fresh PKI per test, and hello servers that serve TLS with its
server certificate (registered in the session etcd with a short TTL, stopped at teardown).

Import them into a test module (``from tests.support.tls import pki, tls_servers  # noqa``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hprose_cluster.demo import make_server

from tests.support.certs import Pki, make_pki, server_context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_servers(etcd: Any, pki: Pki) -> Iterator[Callable[..., Any]]:
    """``start(domain, transport, **options)``: a started hello server of that transport
    (``options`` go to ``hprose_cluster.demo.make_server``: ``host``, ``advertise_url``...),
    serving TLS with the PKI's server certificate unless ``ssl_context`` is given."""
    started: list[Any] = []

    def start(domain: str, transport: str, **kwargs: Any) -> Any:
        kwargs.setdefault("ssl_context", server_context(pki))
        server = make_server(transport, domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5,
                             drain_delay=0.0, **kwargs)
        started.append(server)
        server.start(block=False)
        return server

    yield start
    for server in started:
        server.stop(drain_timeout=1)

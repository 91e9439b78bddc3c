"""Fixtures of the HTTP transport tests."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Iterator

import pytest

from hprose_cluster.transport.http import HttpServer

from tests.support.http import Servers, http_threads


@pytest.fixture
def servers() -> Iterator[Servers]:
    factory = Servers()
    try:
        yield factory
    finally:
        factory.close()
    # a connection thread that called stop() itself ends just after answering
    deadline = time.monotonic() + 2
    while http_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert http_threads() == []


@pytest.fixture
def server(servers: Servers) -> HttpServer:
    return servers()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA with a server certificate for the loopback names, and an unrelated CA."""
    from tests.support.certs import CertificateAuthority

    tmp = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(tmp / "ca")
    server = ca.issue("server", "localhost", server=True, client=False)
    other = CertificateAuthority(tmp / "other", "some other CA")
    return {"ca": ca.ca_file, "other_ca": other.ca_file, "cert": server.cert, "key": server.key}


@pytest.fixture
def https_server(servers: Servers, pki: dict[str, Path]) -> HttpServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    return servers(ssl_context=context)



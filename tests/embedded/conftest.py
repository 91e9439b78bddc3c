"""Fixtures of the embedded etcd tests: ``client_for``, etcd clients closed at teardown."""

from __future__ import annotations

from typing import Callable, Iterator

import etcd3
import pytest

from tests.support.embedded import make_client


@pytest.fixture
def client_for() -> Iterator[Callable[..., etcd3.MultiEndpointEtcd3Client]]:
    clients: list[etcd3.MultiEndpointEtcd3Client] = []

    def make(*endpoints: str, timeout: float = 5) -> etcd3.MultiEndpointEtcd3Client:
        client = make_client(*endpoints, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()

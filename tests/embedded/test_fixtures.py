"""The etcd fixtures of tests/conftest.py: the session etcd and the per-test domain."""

from __future__ import annotations

from typing import Callable

import etcd3
import pytest

from hprose_cluster.embedded import EmbeddedEtcd


def test_session_etcd_fixture(etcd: EmbeddedEtcd, domain: str, client_for: Callable[..., etcd3.MultiEndpointEtcd3Client]) -> None:
    assert etcd.running
    assert domain.startswith("t") and domain.endswith(".svc")
    client = client_for(etcd.endpoint)
    client.put(f"hprose-service/{domain}/x", b"1")
    assert client.get(f"hprose-service/{domain}/x")[0] == b"1"


def test_domain_fixture_is_unique(domain: str, request: pytest.FixtureRequest) -> None:
    other = request.getfixturevalue("domain")
    assert other == domain  # one value per test...
    assert domain not in _seen_domains  # ...and a new one for every test
    _seen_domains.add(domain)


_seen_domains: set[str] = set()


def test_domain_fixture_is_unique_again(domain: str) -> None:
    assert domain not in _seen_domains
    _seen_domains.add(domain)


"""hprose over HTTPS: servers that advertise ``https://`` and clients that verify them.

A ClusterHttpServer given ``ssl_context=`` serves TLS and registers an ``https://`` URL; a
ClusterClient verifies the server certificate against the CA in its ``ssl_context`` (the system
store when none is given).  A certificate that does not verify is a ConnectError naming the
URL -- nothing was sent, so the client may try another server -- and, once no server is left,
the call raises NoServerAvailable chained from that ConnectError, whose message says
"certificate verification failed" and names the URL.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import pytest

from tests.support.certs import client_context, make_pki, server_context
from tests.support.cluster_procs import has_ipv6_loopback
from tests.support.tls import pki, tls_servers  # noqa: F401 - fixtures
from hprose_cluster import (ClusterClient, ConnectError, FailoverPolicy, NoServerAvailable,
                            TransportError)

NO_WAIT = FailoverPolicy(wait_for_server=0)  # fail at once once every server was tried


@pytest.fixture
def https_server(tls_servers: Callable[..., Any]) -> Callable[..., Any]:
    """``https_server(domain, **options)``: a hello server over HTTPS."""
    return functools.partial(tls_servers, transport="http")


def test_https_server_advertises_https_and_a_verifying_client_calls_it(etcd, domain, pki,
                                                                       https_server) -> None:
    server = https_server(domain)
    assert server.url.startswith("https://127.0.0.1:")
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki.ca)) as client:
        assert [s.url for s in client.servers()] == [server.url]
        assert client.hello("tls") == "Hello tls"
        assert client.whoami().startswith(server.url)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_https_over_ipv6_loopback(etcd, domain, pki, https_server) -> None:
    server = https_server(domain, host="::1")
    assert server.url.startswith("https://[::1]:")
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki.ca)) as client:
        assert client.hello("v6") == "Hello v6"


@pytest.mark.parametrize("which", ["another CA", "the system store"])
def test_a_certificate_that_does_not_verify_is_a_clear_error(etcd, domain, pki, https_server,
                                                             which) -> None:
    server = https_server(domain)
    context = client_context(make_pki(pki.ca.parent / "other").ca) if which == "another CA" \
        else None  # default: the system store, which does not know the test CA
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=context, failover=NO_WAIT) as client:
        with pytest.raises(NoServerAvailable) as caught:
            client.hello("x")
    error = caught.value
    assert isinstance(error.__cause__, ConnectError)
    assert error.__cause__.url == server.url and error.__cause__.sent is False
    for message in (str(error), str(error.__cause__)):
        assert "certificate verification failed" in message
        assert server.url in message


def test_client_certificates_for_hprose_servers(etcd, domain, pki, https_server) -> None:
    server = https_server(domain, ssl_context=server_context(pki, require_client_cert=True))
    with_cert = client_context(pki.ca, pki.client)
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=with_cert) as client:
        assert client.hello("mtls") == "Hello mtls"
    without = client_context(pki.ca)
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=without, failover=NO_WAIT,
                       idempotent=True) as client:
        with pytest.raises(NoServerAvailable) as caught:
            client.hello("x")
    # Usually the server's alert arrives first: refused at the handshake, never executed, so a
    # ConnectError (safe to try elsewhere).  If the server's close wins the race, the client
    # cannot tell it from a reply cut short and reports a TransportError that was maybe sent.
    cause = caught.value.__cause__
    assert isinstance(cause, TransportError) and server.url in str(cause)
    if isinstance(cause, ConnectError):
        assert "refused the TLS handshake" in str(cause) and cause.sent is False
    # The server survives a refused handshake and still serves a good client.
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=with_cert) as client:
        assert client.hello("again") == "Hello again"

"""TLS over hprose TCP through ClusterClient, with both naming styles.

hprose for Node.js names TLS TCP servers ``tcps://`` (``tcp4s://``, ``tcp6s://``, ``tls://``):
a TLS ClusterTcpServer advertises that, and a client uses TLS for such a record with no
setting.  Go keeps ``tcp://`` and sets TLS on the client: a server advertising ``tcp://``
(``advertise_url``) is called over TLS by a ClusterClient with ``tcp_tls=True``.
Real etcd, real TLS servers signed by the test CA.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Callable

import pytest

from tests.support import certs
from tests.support.certs import Pki
from tests.support.cluster_procs import has_ipv6_loopback
from tests.support.tls import pki, tls_servers  # noqa: F401 - fixtures
from hprose_cluster import ClusterClient, ConnectError, FailoverPolicy, NoServerAvailable
from hprose_cluster.errors import ConfigError
from hprose_cluster.record import ServerInfo

pytestmark = pytest.mark.timeout(60)

NO_WAIT = FailoverPolicy(wait_for_server=0)


def client_context(pki: Pki) -> ssl.SSLContext:
    return certs.client_context(pki.ca)


@pytest.fixture
def tls_server(tls_servers: Callable[..., Any]) -> Callable[..., Any]:
    """``tls_server(domain, **options)``: a hello server over TLS TCP."""
    return functools.partial(tls_servers, transport="tcp")


@pytest.mark.parametrize("full_duplex", [False, True], ids=["half", "full"])
def test_a_tls_server_advertises_tcp4s_and_the_client_calls_it_over_tls(
        etcd, domain, pki, tls_server, full_duplex) -> None:
    server = tls_server(domain)
    assert server.url.startswith("tcp4s://127.0.0.1:")
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki),
                       full_duplex=full_duplex, timeout=5) as client:
        assert client.discovery.wait_for_servers(5)
        assert [s.url for s in client.servers()] == [server.url]
        assert client.hello("tls") == "Hello tls"
        assert client.sum(2, 3) == 5


def test_tls_over_ipv6_loopback_advertises_tcp6s(etcd, domain, pki, tls_server) -> None:
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    server = tls_server(domain, host="::1")
    assert server.url.startswith("tcp6s://[::1]:")
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki),
                       timeout=5) as client:
        assert client.discovery.wait_for_servers(5)
        assert client.hello("v6") == "Hello v6"


@pytest.mark.parametrize("scheme", ["tcps", "tls"])
def test_other_node_names_are_accepted_in_records(etcd, domain, pki, tls_server,
                                                  scheme) -> None:
    probe = tls_server(domain + "probe")
    port = probe.address[1]
    server = tls_server(domain, advertise_url="%s://localhost:%d" % (scheme, port))
    assert server.url == "%s://localhost:%d" % (scheme, port)
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki),
                       timeout=5) as client:
        assert client.discovery.wait_for_servers(5)
        assert client.hello(scheme) == "Hello " + scheme


def test_go_style_tcp_record_with_tcp_tls_on_the_client(etcd, domain, pki, tls_server) -> None:
    probe = tls_server(domain + "probe")
    url = "tcp://localhost:%d" % probe.address[1]
    server = tls_server(domain, advertise_url=url)  # what Go clients can dial
    assert server.url == url
    with ClusterClient(domain, etcd=etcd.endpoint, ssl_context=client_context(pki),
                       tcp_tls=True, timeout=5) as client:
        assert client.discovery.wait_for_servers(5)
        assert client.hello("go") == "Hello go"
    # without the setting the client speaks plain TCP to a TLS server: a clear failure, no hang
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=3, failover=NO_WAIT) as plain:
        assert plain.discovery.wait_for_servers(5)
        with pytest.raises(Exception) as caught:
            plain.hello("x")
        assert url in str(caught.value)


def test_a_certificate_that_does_not_verify_is_a_clear_connect_error(etcd, domain,
                                                                      tls_server) -> None:
    server = tls_server(domain)
    # no ssl_context: the system trust store, which does not know the test CA
    with ClusterClient(domain, etcd=etcd.endpoint, timeout=5, failover=NO_WAIT) as client:
        assert client.discovery.wait_for_servers(5)
        with pytest.raises(NoServerAvailable) as caught:
            client.hello("x")
    cause = caught.value.__cause__
    assert isinstance(cause, ConnectError) and cause.sent is False
    assert "certificate verification failed" in str(cause) and server.url in str(cause)


@pytest.mark.parametrize("url", ["tcps://h:1", "tcp4s://127.0.0.1:4321", "tcp6s://[::1]:1",
                                 "tls://h:1"])
def test_tls_schemes_are_valid_record_urls(url: str) -> None:
    assert ServerInfo("a.domain", url).url == url


@pytest.mark.parametrize("url", ["tcps://h", "tls://h"])
def test_tls_schemes_need_a_port(url: str) -> None:
    with pytest.raises(ConfigError, match="port"):
        ServerInfo("a.domain", url)

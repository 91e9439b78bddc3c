"""AsyncClusterClient over TLS: hprose TCP with TLS and HTTPS servers registered in a real etcd,
server certificates verified against the test CA, client certificates, and a certificate that
does not verify (a ConnectError: nothing was sent)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from tests.support.certs import client_context, make_pki, server_context
from tests.support.tls import pki, tls_servers  # noqa: F401 - fixtures
from hprose_cluster import (AsyncClusterClient, ConnectError, FailoverPolicy, NoServerAvailable,
                            TransportError)

NO_WAIT = FailoverPolicy(wait_for_server=0)


@pytest.mark.parametrize("transport", ["tcp", "http", "ws"])
def test_a_verifying_client_calls_tls_servers_with_many_calls_in_flight(
        etcd, domain, pki, tls_servers, arun, transport):
    server = tls_servers(domain, transport)

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      ssl_context=client_context(pki.ca)) as client:
            assert [s.url for s in client.servers()] == [server.url]
            assert await client.hello("tls") == "Hello tls"
            results = await asyncio.gather(*(client.sum(i, 1) for i in range(300)))
            assert results == [i + 1 for i in range(300)]
            assert (await client.whoami()).startswith(server.url)

    arun(main())


@pytest.mark.parametrize("transport", ["tcp", "http", "ws"])
def test_a_certificate_that_does_not_verify_is_a_connect_error(etcd, domain, pki, tls_servers,
                                                               arun, transport):
    server = tls_servers(domain, transport)
    other_ca = make_pki(pki.ca.parent / "other").ca

    async def main() -> NoServerAvailable:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, failover=NO_WAIT,
                                      ssl_context=client_context(other_ca)) as client:
            with pytest.raises(NoServerAvailable) as caught:
                await client.hello("x")
            return caught.value

    error = arun(main())
    assert isinstance(error.__cause__, ConnectError)
    assert error.__cause__.url == server.url and error.__cause__.sent is False
    for message in (str(error), str(error.__cause__)):
        assert "certificate verification failed" in message and server.url in message


@pytest.mark.parametrize("transport", ["tcp", "http", "ws"])
def test_client_certificates(etcd, domain, pki, tls_servers, arun, transport):
    server = tls_servers(domain, transport,
                        ssl_context=server_context(pki, require_client_cert=True))

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      ssl_context=client_context(pki.ca, pki.client)) as client:
            assert await client.hello("mtls") == "Hello mtls"
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, failover=NO_WAIT,
                                      idempotent=True, timeout=5,
                                      ssl_context=client_context(pki.ca)) as client:
            with pytest.raises(NoServerAvailable) as caught:
                await client.hello("x")
        # TLS 1.3 refuses a missing client certificate after the client's side of the
        # handshake: it shows up as a failure of the connection, naming the server
        cause = caught.value.__cause__
        assert isinstance(cause, TransportError) and server.url in str(cause)
        async with AsyncClusterClient(domain, etcd=etcd.endpoint,
                                      ssl_context=client_context(pki.ca, pki.client)) as client:
            assert await client.hello("again") == "Hello again"

    arun(main())


def test_go_style_tcp_record_with_tcp_tls_on_the_client(etcd, domain, pki, tls_servers, arun):
    """A TLS server advertising plain ``tcp://`` (what Go clients dial): TLS only with
    ``tcp_tls=True``, as ClusterClient; without it the call fails clearly, naming the URL."""
    probe = tls_servers(domain + "probe", "tcp")
    url = "tcp://127.0.0.1:%d" % probe.address[1]
    server = tls_servers(domain, "tcp", advertise_url=url)
    assert server.url == url

    async def main() -> None:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, tcp_tls=True,
                                      ssl_context=client_context(pki.ca), timeout=5) as client:
            assert await client.hello("go") == "Hello go"
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, timeout=3,
                                      failover=NO_WAIT) as plain:
            with pytest.raises(Exception) as caught:
                await plain.hello("x")
            assert url in str(caught.value)

    arun(main())


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_without_ssl_context_tls_servers_are_verified_against_the_system_store(
        etcd, domain, tls_servers, arun, transport):
    """A TLS server's scheme (``tcp4s://``, ``https://``) means TLS with no context given:
    the system's trust store, which does not know the test CA (a ConnectError, not plain
    TCP to a TLS port)."""
    server = tls_servers(domain, transport)
    assert server.url.split(":")[0] in ("tcp4s", "https")

    async def main() -> NoServerAvailable:
        async with AsyncClusterClient(domain, etcd=etcd.endpoint, failover=NO_WAIT) as client:
            with pytest.raises(NoServerAvailable) as caught:
                await client.hello("x")
            return caught.value

    error = arun(main())
    assert isinstance(error.__cause__, ConnectError) and error.__cause__.sent is False
    assert "certificate verification failed" in str(error.__cause__)

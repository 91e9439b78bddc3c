"""Server metrics: requests by method and outcome, calls in flight, the metrics port and the
``Metrics`` field of the record, over both transports; the method-name reader."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from hprose.common import HproseException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import Counter

from hprose_cluster import ClusterClient, ConfigError, ServerInfo, metrics
from hprose_cluster.deadline import Deadline
from hprose_cluster.demo import make_server
from hprose_cluster.deadline import Deadline
from hprose_cluster.etcd import EtcdConfig, EtcdConnection
from hprose_cluster.metrics import metrics_url
from hprose_cluster.metrics.service import OTHER, UNKNOWN, method_name
from hprose_cluster.transport.base import encode_request
from hprose_cluster.transport.tcp import TcpClient

from tests.support.cluster_procs import has_ipv6_loopback, wait_until
from tests.support.metrics import exposition, registry, value  # noqa: F401

REQUESTS = "hprose_cluster_server_requests_total"
IN_FLIGHT = "hprose_cluster_server_in_flight"
SECONDS = "hprose_cluster_server_request_seconds_count"


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_requests_by_method_and_outcome(registry: Any, etcd: Any, domain: str,
                                        hello_servers: Any, transport: str) -> None:
    server = hello_servers(domain, transport)
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        assert client.discovery.wait_for_servers(10)
        for _ in range(4):
            client.hello("a")
        client.HELLO("case")  # hprose names are case-insensitive: the registered name counts
        client.sum(1, 2)
        with pytest.raises(HproseException):
            client.fail()
        with pytest.raises(HproseException):
            client.no_such_function()
    assert value(registry, REQUESTS, domain=domain, method="hello", outcome="ok") == 5
    assert value(registry, REQUESTS, domain=domain, method="sum", outcome="ok") == 1
    assert value(registry, REQUESTS, domain=domain, method="fail", outcome="error") == 1
    assert value(registry, REQUESTS, domain=domain, method=UNKNOWN, outcome="error") == 1
    assert value(registry, REQUESTS, domain=domain) == 8
    assert value(registry, SECONDS, domain=domain, method="hello") == 5
    assert value(registry, IN_FLIGHT, domain=domain) == 0
    assert server.in_flight == 0


def test_in_flight_while_calls_run(registry: Any, etcd: Any, domain: str,
                                   hello_servers: Any) -> None:
    server = hello_servers(domain, "tcp")
    results: list[Any] = []
    with ClusterClient(domain, etcd=etcd.endpoint, pool_size=4) as client:
        assert client.discovery.wait_for_servers(10)
        threads = [threading.Thread(target=lambda: results.append(client.sleep(1.5)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: value(registry, IN_FLIGHT, domain=domain) == 3, 10)
        assert server.in_flight == 3
        for thread in threads:
            thread.join(20)
    assert results == [1.5, 1.5, 1.5]
    assert value(registry, IN_FLIGHT, domain=domain) == 0
    assert value(registry, REQUESTS, domain=domain, method="sleep", outcome="ok") == 3


def test_function_list_and_garbage_are_other(registry: Any, etcd: Any, domain: str,
                                             hello_servers: Any) -> None:
    server = hello_servers(domain, "tcp")
    with TcpClient(server.url) as client:
        client.hello("x")
        client.transport.round_trip(b"z", Deadline(5))  # the function list
        client.transport.round_trip(b"Cq", Deadline(5))  # not a request: an E reply
    assert value(registry, REQUESTS, domain=domain, method="hello", outcome="ok") == 1
    assert value(registry, REQUESTS, domain=domain, method=OTHER, outcome="ok") == 1
    assert value(registry, REQUESTS, domain=domain, method=OTHER, outcome="error") == 1


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_metrics_port_and_record_field(registry: Any, etcd: Any, domain: str,
                                       hello_servers: Any, transport: str) -> None:
    server = hello_servers(domain, transport, metrics_port=0)
    with EtcdConnection(EtcdConfig.coerce(etcd.endpoint)) as connection:
        stored = connection.get(server.info.key()).kvs[0].value
    record = json.loads(stored)
    # the four fields Go peers read come first, unchanged; Metrics after them
    assert list(record)[:4] == ["UUID", "Domain", "ServerUrl", "CPU"]
    url = record["Metrics"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert metrics_url(ServerInfo.from_json(stored)) == url
    with ClusterClient(domain, etcd=etcd.endpoint) as client:
        assert client.discovery.wait_for_servers(10)
        assert metrics_url(client.servers()[0]) == url
        for _ in range(3):
            client.hello("p")
    text = exposition(url)
    assert value(text, REQUESTS, domain=domain, method="hello", outcome="ok") == 3
    assert value(text, "hprose_cluster_registrar_registered", domain=domain,
                 uuid=server.uuid) == 1
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server.stop(drain_timeout=2)
    with pytest.raises(OSError):  # the metrics port closes with the server
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_no_metrics_port_no_field(registry: Any, etcd: Any, domain: str,
                                  hello_servers: Any) -> None:
    server = hello_servers(domain, "tcp")
    assert "Metrics" not in server.info.extra
    assert metrics_url(server.info) is None


@pytest.mark.parametrize("port", [-1, 65536, "9100", True, 1.5])
def test_bad_metrics_port(registry: Any, etcd: Any, domain: str, port: Any) -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        make_server("tcp", domain, etcd=etcd.endpoint, metrics_port=port)


def test_metrics_port_in_use(registry: Any, etcd: Any, domain: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server = make_server("tcp", domain, etcd=etcd.endpoint, metrics_port=taken.getsockname()[1])
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            server.start(block=False)
    assert server.registrar is None  # never registered; stop() already ran


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_a_registry(registry: Any, host: str) -> None:
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    Counter("made_up_total", "a counter of this test", registry=registry).inc(4)
    with metrics.serve(0, host) as endpoint:
        assert endpoint.url == "http://%s:%d/metrics" % ("[::1]" if host == "::1" else host,
                                                         endpoint.port)
        assert value(endpoint.url, "made_up_total") == 4
    with pytest.raises(OSError):
        socket.create_connection((host, endpoint.port), timeout=2).close()


def test_record_field_round_trips() -> None:
    info = ServerInfo("rt.svc", "tcp://127.0.0.1:4000", cpu=2,
                      extra={"Metrics": "http://127.0.0.1:9100/metrics", "Weight": 3})
    again = ServerInfo.from_json(info.to_json())
    assert again == info and dict(again.extra) == dict(info.extra)
    assert metrics_url(again) == "http://127.0.0.1:9100/metrics"
    for bad in (5, "ftp://x/metrics", "", None):
        assert metrics_url(ServerInfo("rt.svc", "tcp://127.0.0.1:4000", extra={"Metrics": bad})) \
            is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40), st.lists(st.integers(), max_size=3), st.booleans())
def test_method_name_reads_what_clients_write(name: str, args: list[int], byref: bool) -> None:
    assert method_name(encode_request(name, args, byref, False)) == name


@pytest.mark.parametrize("data", [b"", b"z", b"C", b"Cs", b'Cs5"hel', b'Csx"a"z', b"Ri1z",
                                  b'Cs999999999999"a"z', None, "Cs1\"a\"z"])
def test_method_name_of_non_calls(data: Any) -> None:
    assert method_name(data) is None


def test_method_name_other_peers_forms() -> None:
    assert method_name(b"Cuxz") == "x"  # one character, as Go peers may write it
    assert method_name("Cué".encode() + b"z") == "é"
    assert method_name(b"Cez") == ""

"""The typed boundary: what etcd3/gRPC raise becomes the EtcdError subclass code branches on,
and the answers of a member without a leader move the connection to another member.

The gRPC errors here are made by hand (a unit of logic: etcd answers "no leader" only when a
member is cut off, which tests/etcd/test_partition.py does for real); the connections are real.
"""

from __future__ import annotations

import grpc
import pytest

import etcd3.exceptions
from hprose_cluster.errors import EtcdError
from hprose_cluster.etcd import (EtcdCompacted, EtcdConfig, EtcdConnection, EtcdNoLeader,
                                 EtcdPermissionDenied, EtcdUnauthenticated, EtcdUnavailable)
from hprose_cluster.etcd.errors import translate


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


CONFIG = EtcdConfig(("127.0.0.1:2379", "127.0.0.1:2380"), user="svc", password="pw")


@pytest.mark.parametrize("error, kind, words", [
    (FakeRpcError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"), EtcdNoLeader,
     "no leader"),
    (FakeRpcError(grpc.StatusCode.UNKNOWN, "context deadline exceeded"), EtcdUnavailable,
     "no answer within the 5s timeout"),
    (FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), EtcdUnavailable,
     "no answer within"),
    (FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
     EtcdUnavailable, "failed to connect"),
    (FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token"),
     EtcdUnauthenticated, "invalid auth token"),
    (FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
     EtcdPermissionDenied, "etcd user 'svc' lacks the permission"),
    (etcd3.exceptions.RevisionCompactedError(42), EtcdCompacted, "revision 42 is compacted"),
    (etcd3.exceptions.NoServerAvailableError(), EtcdUnavailable, "every endpoint failed"),
    (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: bad"), EtcdError, "bad"),
])
def test_each_failure_becomes_its_type_naming_what_and_where(error, kind, words):
    translated = translate("reading x", error, CONFIG)
    assert type(translated) is kind
    assert isinstance(translated, EtcdError)
    text = str(translated)
    assert text.startswith("reading x (etcd 127.0.0.1:2379,127.0.0.1:2380)"), text
    assert words in text, text


def test_a_compacted_error_carries_its_revision():
    translated = translate("watching x", etcd3.exceptions.RevisionCompactedError(7), CONFIG)
    assert isinstance(translated, EtcdCompacted) and translated.compacted_revision == 7


def test_etcd3_rewrapped_errors_are_traced_to_their_grpc_cause():
    """etcd3 raises UNAVAILABLE as a bare ConnectionFailedError; the gRPC error is its context."""
    try:
        try:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        except grpc.RpcError:
            raise etcd3.exceptions.ConnectionFailedError()
    except etcd3.exceptions.ConnectionFailedError as error:
        assert isinstance(translate("x", error, CONFIG), EtcdNoLeader)


@pytest.fixture
def two_members(etcd_factory):
    first, second = etcd_factory(), etcd_factory()
    connection = EtcdConnection(EtcdConfig((first.endpoint, second.endpoint), timeout=2))
    connection.get("warm-up")  # a member is chosen
    yield connection
    connection.close()


def _other(connection: EtcdConnection) -> str:
    (other,) = set(connection.config.endpoints) - {connection.current_endpoint}
    return other


def test_a_no_leader_refusal_is_retried_on_the_next_member_at_once(two_members):
    connection = two_members
    refused = connection.current_endpoint
    other = _other(connection)
    calls: list[str] = []

    def request(client):
        calls.append(client._current_endpoint_label)
        if len(calls) == 1:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        return client.get_response("x").header.revision

    assert connection.call("reading x", request) > 0
    assert calls[0] == refused and connection.current_endpoint == other


def test_unknown_context_deadline_exceeded_moves_to_another_member(two_members):
    """etcd3 fails over on DEADLINE_EXCEEDED but not on UNKNOWN "context deadline exceeded",
    which a member without a leader sometimes answers: the next request must go elsewhere."""
    connection = two_members
    stuck = connection.current_endpoint

    def request(client):
        raise FakeRpcError(grpc.StatusCode.UNKNOWN, "context deadline exceeded")

    with pytest.raises(EtcdUnavailable):
        connection.call("reading x", request)
    connection.get("x")
    assert connection.current_endpoint not in (None, stuck)


def test_no_leader_on_every_member_is_raised_typed(two_members):
    def request(client):
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")

    with pytest.raises(EtcdNoLeader):
        two_members.call("reading x", request)

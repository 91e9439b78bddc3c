"""Batches and by-reference calls byte for byte, on both server transports, over real sockets.

Vectors from WIRE.md ("Batches", "By-reference arguments"): what hprose-golang v2.0.6 and
hprose for Node.js 2.0.51 servers answer.  hprose 1.4.3 answered the first batch below with
``Rs4"last"z`` only.
"""

from __future__ import annotations

from typing import Any

import pytest
from hprose.common import HproseException
from hprose.server import HproseService

from hprose_cluster import compat
from tests.support.hprose_servers import (VECTOR_FUNCTIONS, exchange, http_exchange, serve,
                                          tcp_exchange)
from tests.support.hprose_servers import server  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(60)

BATCHES = [
    (b'Cs5"hello"a1{ua}Cs3"sum"a2{12}Cs4"echo"a1{s4"last"}z', b'Rs7"Hello a"R3Rs4"last"z'),
    (b'Cs5"hello"a1{ua}Cs4"fail"Cs4"echo"a1{s4"last"}z', b'Rs7"Hello a"Es4"boom"Rs4"last"z'),
]
BYREF = (b'Cs7"appendx"a1{a1{ua}}tz', b'R2Aa1{a2{uaux}}z')
SINGLE = [
    (b'Cs5"Hello"a1{s5"world"}z', b'Rs11"Hello world"z'),
    (b'Cs3"Sum"a2{12}z', b'R3z'),
    (b'Cs4"Fail"z', b'Es4"boom"z'),
    (b'Cs6"nosuch"z', b'Es34"Can\'t find this function nosuch()."z'),
]
# by-reference calls inside a batch: each carries its own t, each reply its own A after its R
BYREF_BATCH = (
    b'Cs5"hello"a1{ua}Cs7"appendx"a1{a1{ua}}tCs4"fail"Cs7"appendx"a1{a2{ubuc}}tCs3"sum"a2{34}z',
    b'Rs7"Hello a"R2Aa1{a2{uaux}}Es4"boom"R3Aa1{a3{ubucux}}R7z',
)


@pytest.mark.parametrize("request_bytes, reply", BATCHES + [BYREF, BYREF_BATCH] + SINGLE)
def test_vectors(server: Any, request_bytes: bytes, reply: bytes) -> None:
    assert exchange(server, request_bytes) == reply


def test_hprose_143_answered_the_batch_with_its_last_call_only() -> None:
    """The defect this dispatch exists for, shown on hprose's own service."""
    compat.apply()
    service = HproseService()
    for function in VECTOR_FUNCTIONS:
        service.addFunction(function)
    assert service._handle(BATCHES[0][0], None) == b'Rs4"last"z'


def test_full_duplex_batch_keeps_its_request_id() -> None:
    server = serve("tcp")
    try:
        for request_id in (0, 7, 0xFFFFFFFF):
            assert tcp_exchange(server.address, BYREF_BATCH[0], request_id) == BYREF_BATCH[1]
    finally:
        server.stop(drain_timeout=2)


def test_function_list_on_z_and_on_get(server: Any) -> None:
    expected = b'Fa5{s5"hello"s3"sum"s4"echo"s4"fail"s7"appendx"}z'
    assert exchange(server, b"z") == expected
    if server.scheme == "http":
        assert http_exchange(server.address, None, method="GET")[2] == expected


def test_a_batch_of_many_calls_answers_every_one_in_order(server: Any) -> None:
    request = b"".join(b'Cs4"echo"a1{i%d;}' % i for i in range(10, 510)) + b"z"
    assert exchange(server, request) == b"".join(b"Ri%d;" % i for i in range(10, 510)) + b"z"


def test_a_request_that_cannot_be_read_fails_whole(server: Any) -> None:
    """As in Go: a call that fails is one E part; bytes that are not a call are one E reply."""
    reply = exchange(server, b'Cs5"hello"a1{ua}Cs4"echo"a1{s4"last"}Xz')
    assert reply == b'Es43"Tag \'tzC\' expected, but \'X\' found in stream"z'
    assert exchange(server, b"Xz") == b'Es19"Wrong Request: \r\nXz"z'


# ---------------------------------------------------------------- nesting through a server


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth


def test_1000_levels_through_every_client_and_server(server: Any) -> None:
    from hprose_cluster.transport.http import HttpClient
    from hprose_cluster.transport.tcp import TcpClient

    with (TcpClient if server.scheme.startswith("tcp") else HttpClient)(server.url) as client:
        assert depth_of(client.echo(nested(1000))) == 1000
        with pytest.raises(HproseException, match="cannot write a value nested deeper than "
                                                  "4096 levels"):
            client.echo(nested(5000))  # refused before anything is sent
        assert client.echo("still fine") == "still fine"


def test_too_deep_requests_and_results_get_an_error_reply(server: Any) -> None:
    from hprose_cluster import codec

    deep = b"a1{" * 5000 + b"n" + b"}" * 5000
    message = ("cannot %s a value nested deeper than 4096 levels (lists, maps and objects "
               "inside one another)")
    reply = exchange(server, b'Cs4"echo"a1{' + deep + b"}z")
    assert reply == b"E" + codec.string_bytes(message % "read") + b"z"
    server.addFunction(lambda: nested(codec.MAX_DEPTH + 1), "deep")
    assert exchange(server, b'Cs4"deep"Cs4"echo"a1{ua}z') == \
        b"E" + codec.string_bytes(message % "write") + b"Ruaz"

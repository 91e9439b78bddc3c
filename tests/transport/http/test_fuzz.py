"""Garbage on the wire never kills HttpServer, and well-behaved clients keep being served."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hprose_cluster.deadline import Deadline
from hprose_cluster.transport.http import HttpClient, HttpServer, HttpTransport

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


class _Errors(logging.Handler):
    """Collects ERROR records of our logger: an exception that reached a handler's guard."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[HttpServer, HttpClient, _Errors]]:
    errors = _Errors()
    logger = logging.getLogger("hprose_cluster.transport.http")
    logger.addHandler(errors)
    server = HttpServer("127.0.0.1", 0, max_body=4096, idle_timeout=2.0)
    server.addFunction(lambda name: "Hello " + name, "hello")
    server.start(block=False)
    client = HttpClient(server.url, timeout=5)
    try:
        yield server, client, errors
    finally:
        client.close()
        server.stop(drain_timeout=2)
        logger.removeHandler(errors)
    assert [t for t in threading.enumerate() if t.name.startswith("hprose-cluster-http-")] == []


def _exchange(server: HttpServer, data: bytes) -> bytes:
    with socket.create_connection(server.address, timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have answered and closed
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


_STATUS = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] ")


def _check_still_serving(fuzzed: tuple[HttpServer, HttpClient, _Errors]) -> None:
    server, client, errors = fuzzed
    assert client.hello("ok") == "Hello ok"
    assert errors.records == [], [r.getMessage() for r in errors.records]
    # the reply reaches the client just before the server counts the request as finished
    deadline = time.monotonic() + 2
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.001)
    assert server.in_flight == 0


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(fuzzed: tuple[HttpServer, HttpClient, _Errors], data: bytes) -> None:
    reply = _exchange(fuzzed[0], data)
    assert reply == b"" or _STATUS.match(reply), reply[:100]
    _check_still_serving(fuzzed)


_token = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=30)
_request = st.tuples(
    st.sampled_from(["POST", "GET", "HEAD", "OPTIONS", "PUT", "", "post", "P\x00ST"]) | _token,
    st.sampled_from(["/", "/a?b=c", "*", "http://x/", ""]) | _token,
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1.1", "HTTP/x", ""]),
    st.lists(st.tuples(
        st.sampled_from(["Content-Length", "Transfer-Encoding", "Expect", "Connection",
                         "Host", "Content-Type"]) | _token,
        st.sampled_from(["0", "5", "-1", "4097", "1e3", "99999999999999999999999",
                         "chunked", "100-continue", "close", "keep-alive", " 5 "]) | _token),
        max_size=6),
    st.binary(max_size=200),
)


@FUZZ
@given(request=_request)
def test_garbled_requests(fuzzed: tuple[HttpServer, HttpClient, _Errors],
                          request: tuple[str, str, str, list[tuple[str, str]], bytes]) -> None:
    method, path, version, headers, body = request
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % pair for pair in headers) + "\r\n"
    reply = _exchange(fuzzed[0], head.encode("latin-1") + body)
    assert reply == b"" or _STATUS.match(reply), reply[:100]
    _check_still_serving(fuzzed)


@FUZZ
@given(body=st.binary(min_size=1, max_size=500) | st.text(max_size=200).map(str.encode))
def test_random_hprose_bodies_get_a_reply(fuzzed: tuple[HttpServer, HttpClient, _Errors],
                                          body: bytes) -> None:
    """A well-framed POST always gets a complete hprose reply (most often an ``E`` reply)."""
    with HttpTransport(fuzzed[0].url) as transport:
        reply = transport.round_trip(body, Deadline(5))
    assert reply[:1] in (b"R", b"E", b"F") and reply.endswith(b"z"), reply[:100]
    _check_still_serving(fuzzed)

"""HttpServer answers a plain hprose POST without going through ``handle()``: the bytes on the
wire must be those ``handle()`` gives, and any of hprose's HTTP options (P3P, CORS,
``onSendHeader``, a policy file, a subclass's ``handle``) must take ``handle()``'s way.
Raw sockets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hprose_cluster.transport.http import HttpServer

from tests.support.http import raw_exchange

pytestmark = pytest.mark.timeout(60)

BODY = b'Cs5"hello"a1{s1"a"}z'


def _post(version: bytes = b"HTTP/1.1", *fields: bytes, body: bytes = BODY) -> bytes:
    lines = [b"POST / " + version, b"Host: x", *fields, b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _undated(reply: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", reply)


@pytest.mark.parametrize("request_bytes", [
    _post(),
    _post(b"HTTP/1.1", b"Connection: close"),
    _post(b"HTTP/1.0"),
    _post(b"HTTP/1.0", b"Connection: keep-alive"),
    _post(body=b'Cs4"fail"a{}z'),
    _post(body=b'Cs6"nosuch"a{}z'),
    _post(body=b"z"),
    _post(body=b"garbage"),
    _post(body=b'Cs3"sum"a2{12}z' * 2),
])
def test_the_plain_answer_is_what_handle_gives(server: HttpServer,
                                               request_bytes: bytes) -> None:
    assert server._posts_plainly()
    plain = raw_exchange(server, request_bytes)
    server._posts_plainly = lambda: False  # type: ignore[method-assign]
    general = raw_exchange(server, request_bytes)
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n")
    assert _undated(plain) == _undated(general)


def _header_added(environ: dict, header: list) -> None:
    header.append(("X-Seen", environ["PATH_INFO"]))


@pytest.mark.parametrize("option, value, expected", [
    ("p3p", True, b"\r\nP3P: CP="),
    ("crossDomain", True, b"\r\nAccess-Control-Allow-Origin: *\r\n"),
    ("onSendHeader", _header_added, b"\r\nX-Seen: /\r\n"),
    ("crossDomainXmlContent", "<cross-domain-policy/>", b'\r\n\r\nRs7"Hello a"z'),
])
def test_hprose_http_options_take_handles_way(server: HttpServer, option: str, value: Any,
                                             expected: bytes) -> None:
    setattr(server, option, value)
    assert not server._posts_plainly()
    reply = raw_exchange(server, _post())
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and expected in reply


def test_a_subclass_handle_is_used(servers: Any) -> None:
    class Teapot(HttpServer):
        def handle(self, environ: dict) -> list:  # type: ignore[override]
            return ["418 I'm a teapot", [("Content-Type", "text/plain")], [b"short and stout"]]

    server = Teapot("127.0.0.1", 0)
    servers.servers.append(server)
    server.start(block=False)
    assert not server._posts_plainly()
    reply = raw_exchange(server, _post())
    assert reply.startswith(b"HTTP/1.1 418 I'm a teapot\r\n")
    assert reply.endswith(b"\r\n\r\nshort and stout")

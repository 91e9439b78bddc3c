"""HTTP/1.1 framing decisions and the strict head parser, on plain values (no sockets)."""

from __future__ import annotations

import pytest

from hprose_cluster.transport.http.framing import (CHUNKED, MAX_HEADERS, Headers, Refusal,
                                                   body_framing, chunk_size, parse_field_block,
                                                   parse_fields,
                                                   parse_request_line, parse_status_line,
                                                   response_head)


@pytest.mark.parametrize("te, cl, method, expected", [
    (None, ["12"], "POST", 12),
    (None, None, "GET", 0),
    (None, None, "POST", 411),
    (["chunked"], None, "POST", CHUNKED),
    (["Chunked "], None, "POST", CHUNKED),
    (["gzip, chunked"], None, "POST", 501),
    (["chunked"], ["5"], "POST", 400),
    (None, ["3", "4"], "POST", 400),
    (None, ["3", "3"], "POST", 3),
    (None, ["-1"], "POST", 400),
    (None, ["1001"], "POST", 413),
])
def test_body_framing(te, cl, method, expected) -> None:  # type: ignore[no-untyped-def]
    framing = body_framing(te, cl, method, max_body=1000)
    if isinstance(expected, int) and expected >= 400:
        assert isinstance(framing, Refusal) and framing.code == expected
    else:
        assert framing == expected


@pytest.mark.parametrize("line, size", [(b"1a\r\n", 26), (b"0\r\n", 0), (b"5;ext=1\r\n", 5),
                                        (b"zz\r\n", None), (b"5", None), (b"\r\n", None)])
def test_chunk_size_lines(line: bytes, size: int | None) -> None:
    assert chunk_size(line) == size


def test_response_head_owns_the_framing_headers() -> None:
    head = response_head("HTTP/1.1", 200, "OK", [("Content-Length", "999"), ("X-A", "1")], 5,
                         close=True, keep_alive_10=False, server="s", date="d")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 5\r\n" in head and b"999" not in head
    assert b"X-A: 1\r\n" in head and b"Connection: close\r\n" in head


# ------------------------------------------------------------- the request line and fields


@pytest.mark.parametrize("line, expected", [
    (b"POST / HTTP/1.1", ("POST", "/", "HTTP/1.1", True)),
    (b"GET /a?b=c HTTP/1.0", ("GET", "/a?b=c", "HTTP/1.0", False)),
    (b"POST  //evil  HTTP/1.1", ("POST", "/evil", "HTTP/1.1", True)),
    (b"GET /", 400), (b"", 400), (b"a b c d", 400), (b"POST / HTTP/x", 400),
    (b"POST / HTTP/1.1.1", 400), (b"POST / http/1.1", 400), (b"POST / HTTP/1.\xb2", 400),
    (b"POST / HTTP/2.0", 505), (b"POST / HTTP/12.3", 505),
])
def test_request_line(line: bytes, expected: object) -> None:
    parsed = parse_request_line(line)
    if isinstance(expected, int):
        assert isinstance(parsed, Refusal) and parsed.code == expected
    else:
        assert tuple(parsed) == expected


def test_fields_are_looked_up_case_insensitively_every_value_kept() -> None:
    headers = parse_fields([b"Host: x", b"content-length:  5 ", b"X-Empty:",
                            b"Content-Length: 6", b"X-Latin: caf\xe9"])
    assert isinstance(headers, Headers)
    assert headers.get_all("Content-Length") == ["5", "6"]
    assert headers.get("CONTENT-LENGTH") == "5" and headers["host"] == "x"
    assert headers.get("X-Empty") == "" and headers.get("missing", "d") == "d"
    assert headers.get("x-latin") == "caf\xe9" and "X-LATIN" in headers
    assert headers.items()[0] == ("Host", "x") and len(headers) == 5


@pytest.mark.parametrize("line", [b" folded: x", b"\tfolded", b"Name : x", b"no colon",
                                  b": no name", b"Bad\x00Name: x", b"X: a\rb", b"X: a\x00"])
def test_a_field_line_that_is_not_token_colon_value_is_400(line: bytes) -> None:
    refused = parse_fields([b"Host: x", line])
    assert isinstance(refused, Refusal) and refused.code == 400


def test_more_than_99_fields_is_431() -> None:
    assert isinstance(parse_fields([b"X: 1"] * MAX_HEADERS), Headers)
    refused = parse_fields([b"X: 1"] * (MAX_HEADERS + 1))
    assert isinstance(refused, Refusal) and refused.code == 431


@pytest.mark.parametrize("line, expected", [
    (b"HTTP/1.1 200 OK", ("HTTP/1.1", 200, "OK")),
    (b"HTTP/1.0 503 Service Unavailable", ("HTTP/1.0", 503, "Service Unavailable")),
    (b"HTTP/1.1 204", ("HTTP/1.1", 204, "")),
    (b"HTTP/1.1 2000 OK", None), (b"ICY 200 OK", None), (b"", None), (b"HTTP/1.1 abc x", None),
])
def test_status_line(line: bytes, expected: object) -> None:
    assert parse_status_line(line) == expected


@pytest.mark.timeout(10)
def test_long_runs_of_whitespace_are_parsed_in_linear_time() -> None:
    """No backtracking blow-up: a field value of 60,000 spaces (or space-separated words
    ended by a NUL) takes milliseconds, not minutes."""
    for block, ok in (("X: " + " " * 60000 + "a\r\n", True),
                      ("X: " + "a " * 30000 + "\x00\r\n", False),
                      ("X: " + " \t" * 30000 + "\r\n", True)):
        parsed = parse_field_block(block, 1)
        assert isinstance(parsed, Headers) is ok

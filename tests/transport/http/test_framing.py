"""HTTP/1.1 request framing decisions, on plain values (no sockets)."""

from __future__ import annotations

import pytest

from hprose_cluster.transport.http.framing import (CHUNKED, Refusal, body_framing, chunk_size,
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

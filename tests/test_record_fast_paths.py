"""The fast paths of record parsing decide exactly as the general paths they stand in for.

``validate_url`` accepts a URL of the common shape with one regular expression, and
``ServerInfo.from_json`` reads a record in the canonical form (the four fields, compact, no
escapes) with another; both fall back to urlsplit / json.loads for anything else.  Here every
input is judged twice, once with the fast path and once with it disabled, and the outcomes
(the value, or the exception type and message) must be the same.
"""

from __future__ import annotations

import string
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hprose_cluster import record
from hprose_cluster.record import ServerInfo, validate_url


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        value = call()
    except Exception as error:  # compared, never swallowed: the test fails on a difference
        return "raised", (type(error).__name__, str(error))
    return "returned", value


def _general(call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """The outcome with both fast paths switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(record, "_SIMPLE_URL", record.re.compile(r"(?!)"))
        patch.setattr(record, "_CANONICAL", record.re.compile(rb"(?!)"))
        patch.setattr(record, "_TRUSTED", record.re.compile(rb"(?!)"))
        return _outcome(call)


url_chars = st.sampled_from(list(string.ascii_letters + string.digits + ".-:/@?#[]%_~+ é"))
urls = st.one_of(
    st.builds(lambda scheme, host, port, path: "%s://%s%s%s" % (scheme, host, port, path),
              st.sampled_from(["http", "https", "tcp", "tcp4", "tcp6", "HTTP", "ftp", "tcp5"]),
              st.text(url_chars, max_size=12),
              st.sampled_from(["", ":", ":0", ":1", ":80", ":65535", ":65536", ":99999", ":00080",
                               ":-1", ":8a"]),
              st.sampled_from(["", "/", "/x", "/a b", "?q", "#f", "/x?y#z", "//", "/\n"])),
    st.text(url_chars, max_size=30))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urls)
def test_validate_url_fast_path_agrees_with_urlsplit(url: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _outcome(lambda: validate_url(url)) == _general(lambda: validate_url(url),
                                                               monkeypatch)


field_text = st.text(st.sampled_from(list("ab-1.é\"\\\x00\x1f/ ") + ["\ud800"]), max_size=8)
records = st.builds(
    lambda u, d, url, cpu, tail: ('{"UUID":"%s","Domain":"%s","ServerUrl":"%s","CPU":%s%s}'
                                  % (u, d, url, cpu, tail)),
    st.one_of(st.just("u-1"), st.sampled_from(["", "u" * 253, "u" * 254, "u~!#", "u\x7f"]),
              field_text),
    st.one_of(st.just("d.x"), st.sampled_from(["", "d" * 254, "D.X"]), field_text),
    st.one_of(st.sampled_from(["tcp://127.0.0.1:9", "http://h/", "tcp://h", "tcp://h:0",
                               "tcp://h:65535", "tcp://h:65536", "https://h", "tcp4://h:1/x",
                               "ws://h:1", "unix:/tmp/s", "tcp://h:1/" + "p" * 2050,
                               "tcp://-h:1", "tcp6://h.:1", "http://h:99999/a?b#c"]),
              field_text),
    st.sampled_from(["1", "8", "0", "01", "-1", "1.5", "true", '"2"', "123456789012345678901"]),
    st.sampled_from(["", ',"Weight":2', " ", ',"CPU":3']))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.booleans(), st.sampled_from([None, "hprose-service/d.x/u-1",
                                                "hprose-service/other/u-1", "d.x/u-1",
                                                "/d.x/u-1", "hprose-service/d.x/u-1/",
                                                "x/d.x/u-2", "hprose-service/D.X/u-1"]))
def test_from_json_fast_path_agrees_with_json(text: str, as_bytes: bool, key: str | None) -> None:
    data: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = _outcome(lambda: ServerInfo.from_json(data, key))
        general = _general(lambda: ServerInfo.from_json(data, key), monkeypatch)
    assert fast == general


def test_the_canonical_record_takes_the_fast_path_and_shares_its_strings() -> None:
    a = ServerInfo.from_json(b'{"UUID":"u-1","Domain":"d.x","ServerUrl":"tcp://h:1","CPU":2}')
    b = ServerInfo.from_json(b'{"UUID":"u-2","Domain":"d.x","ServerUrl":"tcp://h:2","CPU":2}')
    assert a.domain is b.domain  # interned: one string per domain, not per record
    assert a.extra == {} and a.extra is b.extra
    with pytest.raises(TypeError):
        a.extra["Weight"] = 3  # type: ignore[index]  # the shared empty mapping is read-only


def test_a_record_of_the_common_shape_is_read_by_one_expression(monkeypatch) -> None:
    """ASCII names and a simple URL: neither the JSON decoder nor the field checks run."""
    expected = ServerInfo("d.x", "tcp://10.0.0.1:7", "u-1", 4)

    def never(*args: Any) -> Any:
        raise AssertionError("the common shape took a slower path")

    for name in ("_canonical_fields", "_json_fields"):
        monkeypatch.setattr(ServerInfo, name, staticmethod(never))
    for name in ("validate_domain", "validate_uuid", "validate_url", "validate_cpu"):
        monkeypatch.setattr(record, name, never)
    data = b'{"UUID":"u-1","Domain":"d.x","ServerUrl":"tcp://10.0.0.1:7","CPU":4}'
    info = ServerInfo.from_json(data, "hprose-service/d.x/u-1")
    assert (info.uuid, info.domain, info.url, info.cpu, info.weight) == ("u-1", "d.x",
                                                                         "tcp://10.0.0.1:7", 4, 4.0)
    assert info.to_json() == data and info == expected and hash(info) == hash(expected)

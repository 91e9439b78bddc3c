"""hprose 1.4.3 fixes in hprose_cluster.compat: UTF-16 string lengths and error replies."""

from __future__ import annotations

from io import BytesIO

import hprose
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hprose.io import HproseReader, HproseWriter
from hprose.server import HproseService

from hprose_cluster import compat
from hprose_cluster.transport.base import decode_reply, encode_request

compat.apply()

pytestmark = pytest.mark.timeout(30)


def write(method: str, *args: object, simple: bool = False) -> bytes:
    stream = BytesIO()
    getattr(HproseWriter(stream, simple), method)(*args)
    return stream.getvalue()


def test_apply_is_idempotent() -> None:
    patched = {name: HproseWriter.__dict__[name] for name in
               ("writeString", "serialize", "writeUTF8Char", "_HproseWriter__writeClass")}
    do_error = HproseService.__dict__["_doError"]
    compat.apply()
    compat.apply()
    assert compat.is_applied()
    for name, wrapper in patched.items():
        assert HproseWriter.__dict__[name] is wrapper, name
    assert HproseService.__dict__["_doError"] is do_error
    # one layer of wrapping only: the wrapped function is hprose's own
    assert HproseWriter.__dict__["writeString"].__wrapped__.__module__ == "hprose.io"
    assert hprose.serialize("a😀b") == 's4"a😀b"'.encode()


@pytest.mark.parametrize("value, expected", [
    ("a😀b", 's4"a😀b"'),
    ("😀", 's2"😀"'),
    ("😀😀", 's4"😀😀"'),
    ("Hello a😀b", 's10"Hello a😀b"'),
    ("héllo", 's5"héllo"'),
    ("é", "ué"),           # one BMP character keeps the u tag
    ("a", "ua"),
    ("", "e"),
    ("hello", 's5"hello"'),
])
def test_serialize_counts_utf16_units(value: str, expected: str) -> None:
    data = hprose.serialize(value)
    assert data == expected.encode("utf-8")
    assert hprose.unserialize(data) == value


def test_write_string_and_utf8_char_directly() -> None:
    assert write("writeString", "a😀b") == 's4"a😀b"'.encode()
    assert write("writeString", "") == b's""'
    assert write("writeString", b"boom") == b's4"boom"'  # bytes are text, not b'boom'
    assert write("writeUTF8Char", "😀") == 's2"😀"'.encode()
    assert write("writeUTF8Char", "x") == b"ux"


def test_containers_keys_and_references() -> None:
    emoji = "😀"
    assert hprose.serialize([emoji, emoji]) == 'a2{s2"😀"r1;}'.encode()
    assert hprose.serialize({"k😀": "v😀"}) == 'm1{s3"k😀"s3"v😀"}'.encode()
    data = hprose.serialize({"k😀": [emoji, "x😀", emoji]})
    assert hprose.unserialize(data) == {"k😀": [emoji, "x😀", emoji]}


def test_object_class_and_field_names() -> None:
    thing = type("Thing", (), {})
    hprose.ClassManager.register(thing, "Thing😀")  # a class alias outside the BMP
    obj = thing()
    setattr(obj, "f😀", "😀")
    assert hprose.serialize(obj) == 'c7"Thing😀"1{s3"f😀"}o0{s2"😀"}'.encode()


def test_request_encoding() -> None:
    assert encode_request("hello", ["a😀b"], False, False) == 'Cs5"hello"a1{s4"a😀b"}z'.encode()
    assert encode_request("hello", ["😀"], False, False) == 'Cs5"hello"a1{s2"😀"}z'.encode()


def test_reader_counts_utf16_units() -> None:
    """hprose's reader was already right: 4 UTF-8 bytes are two units."""
    stream = BytesIO('s4"a😀b"s2"😀"s10"Hello a😀b"1'.encode())
    reader = HproseReader(stream)
    assert [reader.unserialize() for _ in range(4)] == ["a😀b", "😀", "Hello a😀b", 1]
    assert decode_reply('Rs10"Hello a😀b"z'.encode(), None, 0) == "Hello a😀b"


def hprose_read_string(data: bytes) -> object:
    """hprose 1.4.3's own string reader (the function the patch replaces) on ``data``."""
    reader = HproseReader(BytesIO(data))
    return HproseReader.__dict__["_HproseReader__readString"].__wrapped__(reader)


def our_read_string(data: bytes) -> object:
    reader = HproseReader(BytesIO(data))
    value = reader._HproseReader__readString()  # type: ignore[attr-defined]
    return value, reader.stream.read()  # and what it left unread


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.binary(max_size=8))
def test_string_reader_agrees_with_hprose_on_every_text(text: str, after: bytes) -> None:
    from hprose_cluster.compat import utf16_length
    body = ('%d"%s"' % (utf16_length(text), text)).encode("utf-8", "surrogatepass") + after
    try:
        expected = hprose_read_string(body)
    except UnicodeDecodeError:  # lone surrogates: neither reader accepts them
        with pytest.raises(UnicodeDecodeError):
            our_read_string(body)
        return
    assert expected == text
    assert our_read_string(body) == (text, after)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 12), st.binary(max_size=16))
def test_string_reader_on_any_bytes_returns_the_same_or_fails_cleanly(length: int,
                                                                      raw: bytes) -> None:
    """Garbage: the same value as hprose's reader when it has one, else an exception (never a
    hang, never a read past the declared string)."""
    body = b'%d"' % length + raw
    try:
        expected = hprose_read_string(body)
    except Exception:
        expected = None
    try:
        value, _ = our_read_string(body)
    except (UnicodeDecodeError, hprose.HproseException):
        assert expected is None
    else:
        assert value == expected


def test_a_long_string_is_read_in_one_pass() -> None:
    text = "x" * 500_000 + "é😀" * 1000
    data = hprose.serialize(text)
    assert hprose.unserialize(data) == text


def make_service() -> HproseService:
    service = HproseService()

    def hello(name: str) -> str:
        return "Hello " + name

    def fail() -> None:
        raise Exception("boom")

    service.addFunction(hello)
    service.addFunction(fail)
    return service


def test_service_replies() -> None:
    service = make_service()
    assert service._handle('Cs5"hello"a1{s4"a😀b"}z'.encode(), None) == \
        'Rs10"Hello a😀b"z'.encode()
    assert service._handle('Cs5"hello"a1{s2"😀"}z'.encode(), None) == \
        'Rs8"Hello 😀"z'.encode()


def test_error_reply_is_text() -> None:
    service = make_service()
    seen: list[tuple[Exception, object]] = []
    service.onSendError = lambda e, context: seen.append((e, context))
    assert service._handle(b'Cs4"fail"z', "ctx") == b'Es4"boom"z'
    assert service._handle(b'Cs4"Fail"z', "ctx") == b'Es4"boom"z'
    assert len(seen) == 2 and str(seen[0][0]) == "boom" and seen[0][1] == "ctx"


def test_error_reply_non_bmp_and_unknown_method() -> None:
    service = make_service()

    def fail2() -> None:
        raise ValueError("b😀m")

    service.addFunction(fail2)
    assert service._handle(b'Cs5"fail2"z', None) == 'Es4"b😀m"z'.encode()
    reply = service._handle(b'Cs6"nosuch"z', None)
    assert reply == b'Es34"Can\'t find this function nosuch()."z'


def test_error_reply_debug_sends_traceback() -> None:
    service = make_service()
    service.debug = True
    reply = service._handle(b'Cs4"fail"z', None)
    assert reply.startswith(b"Es") and reply.endswith(b"z")
    with pytest.raises(hprose.HproseException) as caught:
        decode_reply(reply, None, 0)  # the declared length must match the text exactly
    message = str(caught.value)
    assert message.startswith("Traceback") and "Exception: boom" in message
    assert message.endswith("\n")


def test_error_reply_goes_through_filters() -> None:
    service = make_service()

    class Upper:
        def inputFilter(self, data: bytes, context: object) -> bytes:  # noqa: N802
            return data

        def outputFilter(self, data: bytes, context: object) -> bytes:  # noqa: N802
            return data.upper()

    service.filter = Upper()
    assert service._handle(b'Cs4"fail"z', None) == b'ES4"BOOM"Z'

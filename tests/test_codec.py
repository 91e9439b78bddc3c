"""hprose_cluster.codec: the same bytes and values as hprose 1.4.3's recursive code, any depth.

The references are hprose's own ``serialize``/``unserialize``/``readRaw`` (the functions compat
wraps), run recursively on a subclass, with compat's string fixes, so any difference in bytes,
values, references, classes or errors shows up.
"""

from __future__ import annotations

import math
import uuid
from io import BytesIO
from typing import Any

import hprose
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hprose.common import HproseException
from hprose.io import HproseRawReader, HproseReader, HproseWriter

from hprose_cluster import codec, compat

compat.apply()

pytestmark = pytest.mark.timeout(120)

_ORIGINAL_SERIALIZE = HproseWriter.__dict__["serialize"].__wrapped__
_ORIGINAL_UNSERIALIZE = HproseReader.__dict__["unserialize"].__wrapped__
_ORIGINAL_READ_RAW = HproseRawReader.__dict__["readRaw"].__wrapped__


class RecursiveWriter(HproseWriter):
    """hprose 1.4.3's writer (recursive) with compat's lone non-BMP character rule."""

    def serialize(self, v: Any) -> None:
        if type(v) is str and len(v) == 1 and ord(v) > 0xFFFF:
            self.writeStringWithRef(v)
        else:
            _ORIGINAL_SERIALIZE(self, v)


class RecursiveReader(HproseReader):
    unserialize = _ORIGINAL_UNSERIALIZE
    readRaw = _ORIGINAL_READ_RAW

    def _HproseRawReader__readDateTimeRaw(self, ostream: Any) -> None:  # noqa: N802
        """1.4.3's, but ending at the end of the stream (1.4.3 loops there forever)."""
        while True:
            c = self.stream.read(1)
            if not c:
                raise HproseException("No byte found in stream")
            ostream.write(c)
            if c in (b";", b"Z"):
                return


class Thing:
    pass


hprose.ClassManager.register(Thing, "Thing")


def make_thing(fields: dict[str, Any]) -> Thing:
    thing = Thing()
    for name, value in fields.items():
        setattr(thing, name, value)
    return thing


def write_with(writer_class: type, value: Any, simple: bool) -> bytes | tuple[str, str]:
    stream = BytesIO()
    try:
        writer_class(stream, simple).serialize(value)
    except Exception as error:  # the same failure on both sides counts as the same output
        return type(error).__name__, str(error)
    return stream.getvalue()


def read_with(reader_class: type, data: bytes, simple: bool) -> Any:
    stream = BytesIO(data)
    try:
        value = reader_class(stream, simple).unserialize()
    except Exception as error:
        return type(error).__name__, str(error)
    # values compared through the reference writer: references and classes included
    return write_with(RecursiveWriter, value, simple), stream.tell()


scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=8) | st.sampled_from(["", "a", "é", "😀", "a😀b", "x" * 20])
           | st.binary(max_size=8) | st.uuids())


def containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return (st.lists(children, max_size=4)
            | st.lists(children, max_size=3).map(lambda items: items + items)  # references
            | st.tuples(children, children)
            | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=3)
            | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
            .map(make_thing))


values = st.recursive(scalars, containers, max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans())
def test_writer_bytes_are_hprose_bytes(value: Any, simple: bool) -> None:
    assert write_with(HproseWriter, value, simple) == write_with(RecursiveWriter, value, simple)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans())
def test_reader_values_are_hprose_values(value: Any, simple: bool) -> None:
    data = write_with(RecursiveWriter, value, simple)
    if not isinstance(data, bytes):
        return
    assert read_with(HproseReader, data, simple) == read_with(RecursiveReader, data, simple)
    raw = HproseReader(BytesIO(data + b"z")).readRaw().getvalue()
    assert raw == RecursiveReader(BytesIO(data + b"z")).readRaw().getvalue() == data


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.integers(0, 200), st.binary(min_size=0, max_size=3), st.booleans())
def test_damaged_bytes_fail_or_read_as_hprose_does(value: Any, cut: int, junk: bytes,
                                                   simple: bool) -> None:
    data = write_with(RecursiveWriter, value, False)
    if not isinstance(data, bytes):
        return
    damaged = data[:cut] + junk + data[cut + len(junk):]
    assert read_with(HproseReader, damaged, simple) == read_with(RecursiveReader, damaged, simple)
    ours = theirs = None
    try:
        ours = HproseReader(BytesIO(damaged)).readRaw().getvalue()
    except Exception as error:
        ours = (type(error).__name__, str(error))
    try:
        theirs = RecursiveReader(BytesIO(damaged)).readRaw().getvalue()
    except Exception as error:
        theirs = (type(error).__name__, str(error))
    assert ours == theirs


def raw_with(reader_class: type, data: bytes) -> bytes | tuple[str, str]:
    try:
        return reader_class(BytesIO(data)).readRaw().getvalue()
    except Exception as error:
        return type(error).__name__, str(error)


def test_a_brace_where_a_value_must_follow_fails_as_in_hprose() -> None:
    """After a class definition or an ``E``, 1.4.3 reads one more value: a ``}`` there is an
    unexpected tag, not the end of the enclosing container (found by the test above)."""
    value = [[], -100, (["00\x80\U00010000"] * 2, {
        -100: uuid.UUID("e3e70682-c209-4cac-629f-6fbed82c07cd"), -1000000: None,
        "00\x80\x80": -100}), make_thing({})]
    data = write_with(RecursiveWriter, value, False)
    assert isinstance(data, bytes)
    damaged = data[:120] + b"\x00" + data[121:]  # c5"Thing"0{} becomes c5"Thing"\x00}o0{}
    for case in (damaged, b"a1{E}", b"a1{c1\"T\"0{}}", b"E}"):
        expected = ("HproseException", "Unexpected serialize tag '}' in stream")
        assert raw_with(RecursiveReader, case) == expected
        assert raw_with(HproseReader, case) == expected, case
    assert raw_with(HproseReader, b"a1{c1\"T\"0{}o0{}}") == b"a1{c1\"T\"0{}o0{}}"
    assert raw_with(HproseReader, b"a1{Es1\"x\"}") == b"a1{Es1\"x\"}"


def test_a_date_or_time_cut_short_fails_instead_of_filling_memory() -> None:
    for data in (b"T12", b"D2024", b"a1{T1", b"T"):
        with pytest.raises(HproseException, match="No byte found in stream"):
            HproseReader(BytesIO(data)).readRaw()


def test_dumps_is_a_fresh_writer() -> None:
    for value in ["", "a", "😀", "ab", "a😀b", 0, 9, 10, -1, 2**31, 2**70, None, True, False,
                  1.5, math.inf, -math.inf, 1e300, [1, "ab", "ab"], {"k": [None]},
                  uuid.UUID(int=5), b"xy"]:
        for simple in (False, True):
            assert codec.dumps(value, simple) == write_with(RecursiveWriter, value, simple)
    assert codec.dumps(math.nan) == b"N"


def test_dict_items_tuples_never_alias_each_other() -> None:
    """1.4.3 may write a freed tuple's id as a reference to the next; kept alive here."""
    view = {i: i for i in range(50)}.items()
    data = hprose.serialize(view)
    assert b"r" not in data
    assert hprose.unserialize(data) == [[i, i] for i in range(50)]


# ------------------------------------------------------------------------------ depth


def nested(depth: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        assert len(value) == 1
        value, depth = value[0], depth + 1
    assert value == "leaf"
    return depth


def test_1000_levels_both_ways_where_hprose_stopped_at_330() -> None:
    with pytest.raises(RecursionError):  # what 1.4.3 does
        RecursiveWriter(BytesIO()).serialize(nested(400))
    data = hprose.serialize(nested(1000))
    assert data == b"a1{" * 1000 + b's4"leaf"' + b"}" * 1000
    assert depth_of(hprose.unserialize(data)) == 1000
    assert HproseReader(BytesIO(data)).readRaw().getvalue() == data
    mixed = {"k": [make_thing({"a": nested(300)})] * 2}
    for _ in range(200):
        mixed = {"k": [mixed]}
    assert hprose.serialize(hprose.unserialize(hprose.serialize(mixed))) == hprose.serialize(mixed)


def test_the_deepest_value_allowed_and_one_level_more() -> None:
    deepest = nested(codec.MAX_DEPTH)
    assert depth_of(hprose.unserialize(hprose.serialize(deepest))) == codec.MAX_DEPTH
    with pytest.raises(HproseException, match="nested deeper than 4096 levels"):
        hprose.serialize(nested(codec.MAX_DEPTH + 1))
    too_deep = b"a1{" * (codec.MAX_DEPTH + 1) + b"n" + b"}" * (codec.MAX_DEPTH + 1)
    with pytest.raises(HproseException, match="read a value nested deeper than 4096 levels"):
        hprose.unserialize(too_deep)
    with pytest.raises(HproseException, match="nested deeper than 4096"):
        HproseReader(BytesIO(too_deep)).readRaw()


def test_a_peer_cannot_make_the_reader_build_millions_of_levels() -> None:
    """Ten million open lists (30 MB, under the frame limit) stop at the limit at once."""
    with pytest.raises(HproseException, match="deeper than"):
        hprose.unserialize(b"m1{" * 10_000_000)
    cyclic: list = []
    cyclic.append(cyclic)  # a reference to itself is written as a reference, not a depth
    assert hprose.serialize(cyclic) == b"a1{r0;}"
    with pytest.raises(HproseException, match="deeper than"):  # simple mode has no references
        hprose.serialize(cyclic, True)


# ------------------------------------------------------------------- the reply fast path


def general_result(data: bytes) -> Any:
    stream = BytesIO(data)
    assert stream.read(1) == b"R"
    try:
        value = HproseReader(stream).unserialize()
    except Exception as error:
        return type(error).__name__
    return value if stream.read() == b"z" else "not one value"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values | st.sampled_from(["", "a", "é", "x" * 70, 0, 9, 10, -3, 2**40, None, True]),
       st.integers(0, 12), st.binary(max_size=2))
def test_scalar_result_is_the_general_readers_value_or_misses(value: Any, cut: int,
                                                             junk: bytes) -> None:
    written = write_with(HproseWriter, value, False)
    if not isinstance(written, bytes):
        return  # objects of one class with different fields cannot be written (as in 1.4.3)
    reply = b"R" + written + b"z"
    for data in (reply, reply[:cut] + junk + reply[cut + len(junk):]):
        fast = codec.scalar_result(data)
        if fast is not codec.MISS:
            expected = general_result(data)
            assert type(fast) is type(expected) and fast == expected, data
    if isinstance(value, (int, str)) and not isinstance(value, bool) and (
            not isinstance(value, str) or (value.isascii() and value != "")):
        assert codec.scalar_result(reply) == value

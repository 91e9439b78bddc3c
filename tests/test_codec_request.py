"""hprose_cluster.codec.encode_call: the fast path writes the bytes of hprose's own client.

The reference is a fresh ``HproseWriter`` writing the argument list (what ``encode_request``
did before the fast path), for any mix of arguments: the scalars the fast path formats, and
the values it hands to the writer (containers, bytes, subclasses, a string object twice).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hprose.io import HproseWriter

from hprose_cluster import codec, compat
from hprose_cluster.codec import request

compat.apply()

pytestmark = pytest.mark.timeout(120)


def reference(name: str, args: list, byref: bool, simple: bool) -> bytes:
    if not args and not byref:
        return b"C" + codec.string_bytes(name) + b"z"
    stream = BytesIO()
    HproseWriter(stream, simple).serialize(list(args))
    return b"C" + codec.string_bytes(name) + stream.getvalue() + (b"tz" if byref else b"z")


class Text(str):
    pass


scalars = (st.text(max_size=6) | st.sampled_from(["", "a", "é", "😀", "a😀", "\ud800x", "ab"])
           | st.integers() | st.sampled_from([0, 9, 10, -1, 2**31 - 1, 2**31, -2**31 - 1])
           | st.floats(allow_nan=True) | st.booleans() | st.none())
others = (st.lists(st.integers(), max_size=2) | st.binary(max_size=3)
          | st.builds(Text, st.text(max_size=3)) | st.dictionaries(st.text(max_size=2),
                                                                 st.integers(), max_size=2))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=8), st.lists(scalars | others, max_size=18), st.booleans(),
       st.booleans(), st.booleans())
def test_encode_call_is_the_writers_bytes(name: str, args: list, byref: bool, simple: bool,
                                          as_tuple: bool) -> None:
    try:
        expected: Any = reference(name, args, byref, simple)
    except Exception as error:  # the same failure counts as the same output
        expected = type(error)
    try:
        got: Any = codec.encode_call(name, tuple(args) if as_tuple else args, byref, simple)
    except Exception as error:
        got = type(error)
    assert got == expected


def test_a_string_object_twice_is_a_reference_except_in_simple_mode() -> None:
    word = "".join(["ab", "cd"])  # one object, passed twice
    assert codec.encode_call("f", [word, word]) == b'Cs1"f"a2{s4"abcd"r1;}z'
    assert codec.encode_call("f", [word, word], simple=True) == b'Cs1"f"a2{s4"abcd"s4"abcd"}z'
    assert codec.encode_call("f", [word, "".join(["ab", "cd"])]) == \
        b'Cs1"f"a2{s4"abcd"s4"abcd"}z'


def test_the_common_calls() -> None:
    assert codec.encode_call("hello", ("w",)) == b'Cs5"hello"a1{uw}z'
    assert codec.encode_call("hello", ()) == b'Cs5"hello"z'
    assert codec.encode_call("hello", [], byref=True) == b'Cs5"hello"a{}tz'
    assert codec.encode_call("add", [1, 2.5, None, True, 12]) == \
        b'Cs3"add"a5{1d2.5;nti12;}z'


def test_the_kept_names_are_bounded() -> None:
    for i in range(request._MAX_HEADS + 10):
        assert codec.encode_call("m%d" % i, ()) == b"C" + codec.string_bytes("m%d" % i) + b"z"
    assert len(request._heads) <= request._MAX_HEADS

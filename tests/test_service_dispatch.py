"""Our dispatch against hprose 1.4.3's, request by request (a unit of logic: no sockets).

For a request holding one call, ``Service._handle`` must answer exactly what hprose 1.4.3's
``HproseService._handle`` (with compat's error fix) answers, for well-formed and damaged
requests alike; a batch must be answered as its calls one by one.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hprose.server import HproseService

from hprose_cluster import compat
from hprose_cluster.service import Service
from hprose_cluster.transport.base import encode_request
from tests.support.hprose_servers import VECTOR_FUNCTIONS

compat.apply()

pytestmark = pytest.mark.timeout(120)


def twice(value: Any) -> list:
    return [value, value]


def count(*args: Any) -> int:
    return len(args)


def publish(service: Any) -> Any:
    for function in VECTOR_FUNCTIONS + (twice, count):
        service.addFunction(function)
    return service


OURS = publish(Service())
THEIRS = publish(HproseService())

names = st.sampled_from(["hello", "HELLO", "sum", "echo", "fail", "appendx", "twice", "count",
                         "nosuch", "é", "a", "x😀"])
leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=6)
          | st.floats(allow_nan=False) | st.binary(max_size=4))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=3), children, max_size=2), max_leaves=8)
calls = st.tuples(names, st.lists(values, max_size=3), st.booleans())


def call_bytes(name: str, args: list, byref: bool) -> bytes:
    return encode_request(name, args, byref, False)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls)
def test_one_call_is_answered_as_hprose_143_answers_it(call: tuple) -> None:
    request = call_bytes(*call)
    assert OURS._handle(request, None) == THEIRS._handle(request, None)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls, st.integers(1, 60), st.binary(max_size=3))
def test_a_damaged_call_is_answered_as_hprose_143_answers_it(call: tuple, cut: int,
                                                             junk: bytes) -> None:
    request = call_bytes(*call)
    damaged = request[:cut] + junk + request[cut + len(junk):]
    if b"C" in damaged[1:-1] or not damaged.endswith(b"z"):
        return  # a second call, or a Wrong Request (1.4.3's message of it is not text)
    assert OURS._handle(damaged, None) == THEIRS._handle(damaged, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(calls, min_size=2, max_size=6))
def test_a_batch_is_answered_as_its_calls_one_by_one(batch: list) -> None:
    singles = [call_bytes(*call) for call in batch]
    request = b"".join(single[:-1] for single in singles) + b"z"
    expected = b"".join(OURS._handle(single, None)[:-1] for single in singles) + b"z"
    assert OURS._handle(request, None) == expected


def test_functions_added_later_and_the_function_list_follow_each_other() -> None:
    service = Service()
    assert service._handle(b"z", None) == b"Fa{}z"
    service.addFunction(len)
    assert service._handle(b"z", None) == b'Fa1{s3"len"}z'
    service.addFunction(abs, "len")  # an alias published again replaces the function
    assert service._handle(b'Cs3"LEN"a1{i-3;}z', None) == b"R3z"
    assert service._handle(b"z", None) == b'Fa1{s3"len"}z'
    assert service._doFunctionList(None) == b'Fa1{s3"len"}z'


def test_the_1_4_3_entry_points_still_answer() -> None:
    """``_doInvoke`` given a stream after the C, as 1.4.3's ``_handle`` calls it."""
    from io import BytesIO

    stream = BytesIO(b'Cs3"sum"a2{12}Cs3"sum"a2{34}z')
    stream.read(1)
    assert OURS._doInvoke(stream, None) == b"R3R7z"
    assert OURS._doInvoke(b'Cs3"sum"a2{12}z', None) == b"R3z"

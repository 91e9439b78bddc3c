"""``Service._direct``, the one-pass answer to the common request, against the general path
(a unit of logic: no sockets).

Whatever ``_direct`` answers must be byte for byte what ``_handle``'s general path answers,
the function executed once either way; what it declines (None) must be declined before
anything ran.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hprose.common import HproseResultMode

from hprose_cluster import compat
from hprose_cluster.service import Service
from hprose_cluster.transport.base import encode_request

compat.apply()

pytestmark = pytest.mark.timeout(120)

CALLS: list[tuple] = []


def hello(name: Any) -> Any:
    CALLS.append(("hello", name))
    return "Hello %s" % (name,)


def echo(*args: Any) -> Any:
    CALLS.append(("echo",) + args)
    return args[0] if len(args) == 1 else list(args)


def fail(*args: Any) -> Any:
    CALLS.append(("fail",) + args)
    raise ValueError("boom %r" % (args,))


def where(a: Any, context: Any) -> Any:
    CALLS.append(("where", a))
    return "%s at %s" % (a, context)


def appendx(items: Any) -> Any:
    CALLS.append(("appendx", items))
    if isinstance(items, list):
        items.append("x")
    return len(items) if hasattr(items, "__len__") else items


def raw(value: Any) -> bytes:
    CALLS.append(("raw", value))
    return b"Rs2\"ok\""


class General(Service):
    """The same dispatch with the one-pass answer turned off."""

    def _direct(self, data: Any, context: Any) -> bytes | None:
        return None


def publish(service: Service) -> Service:
    for function in (hello, echo, fail, where, appendx):
        service.addFunction(function)
    service.addFunction(raw, resultMode=HproseResultMode.Raw)
    return service


DIRECT = publish(Service())
GENERAL = publish(General())

names = st.sampled_from(["hello", "HeLLo", "echo", "fail", "where", "appendx", "raw", "nosuch",
                         "é"])
scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=5)
           | st.floats(allow_nan=False))
values = scalars | st.lists(scalars, max_size=2)


def answer(service: Service, request: bytes) -> tuple[bytes, list]:
    CALLS.clear()
    reply = service._handle(request, "ctx")
    return reply, list(CALLS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, st.lists(values, max_size=3), st.booleans(), st.booleans())
def test_the_direct_answer_is_the_general_one(name: str, args: list, byref: bool,
                                              debug: bool) -> None:
    DIRECT.debug = GENERAL.debug = debug
    request = encode_request(name, args, byref, False)
    got, ran = answer(DIRECT, request)
    want, expected = answer(GENERAL, request)
    if debug and want.startswith(b"E"):  # a traceback: its frames differ, its shape not
        assert got.startswith(b"E") and got.endswith(b"z")
    else:
        assert got == want
    assert ran == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, st.lists(scalars, max_size=1), st.integers(0, 40), st.binary(min_size=1, max_size=3))
def test_a_damaged_request_is_answered_as_the_general_path_answers_it(
        name: str, args: list, cut: int, junk: bytes) -> None:
    DIRECT.debug = GENERAL.debug = False
    request = encode_request(name, args, False, False)
    damaged = request[:cut] + junk + request[cut + len(junk):]
    got, ran = answer(DIRECT, damaged)
    want, expected = answer(GENERAL, damaged)
    assert (got, ran) == (want, expected)


@pytest.mark.parametrize("request_bytes, reply", [
    (b'Cs5"hello"a1{uw}z', b'Rs7"Hello w"z'),
    (b'Cs5"hello"a1{s5"world"}z', b'Rs11"Hello world"z'),
    (b'Cs4"echo"a1{i-12;}z', b"Ri-12;z"),
    (b'Cs4"echo"a1{7}z', b"R7z"),
    (b'Cs4"echo"a1{n}z', b"Rnz"),
    (b'Cs4"echo"a1{e}z', b"Rez"),
    (b'Cs4"echo"a2{tf}z', b"Ra2{tf}z"),
    (b'Cs4"echo"a1{5}tz', b"R5Aa1{5}z"),
    (b'Cs5"where"a1{1}z', b'Rs8"1 at ctx"z'),
    (b'Cs4"fail"a{}z', b'Es7"boom ()"z'),
])
def test_common_requests_are_answered_in_one_pass(request_bytes: bytes, reply: bytes) -> None:
    DIRECT.debug = GENERAL.debug = False
    assert DIRECT._direct(request_bytes, "ctx") == reply
    assert GENERAL._handle(request_bytes, "ctx") == reply


@pytest.mark.parametrize("request_bytes", [
    b'Cs5"hello"a1{uw}Cs5"hello"a1{uw}z',  # a batch
    b'Cs3"raw"a1{1}z',  # Raw result mode
    b'Cs6"nosuch"a{}z',  # not published: the general path's error
    b'Cs5"hello"a1{d1.5;}z',  # not a small scalar
    b'Cs1"\xc3\xa9"a{}z',  # not an ASCII name
    b'Cs5"hello"a1{s5"wor"}z',  # a string shorter than it says
    b'Cs5"hello"a1{s1"\xc3\xa9"}z',  # not an ASCII argument
    b'Cs5"hello"a1{uw}zz',  # more after the call
    b"z",  # the function list
    b'Cs5"hello"a1{uw}',  # damaged
    b"",
])
def test_other_requests_are_declined_before_anything_runs(request_bytes: bytes) -> None:
    CALLS.clear()
    assert DIRECT._direct(request_bytes, "ctx") is None
    assert CALLS == []


def test_filters_and_events_take_the_general_path() -> None:
    seen: list = []

    class Tap:
        def inputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            seen.append("in")
            return data

        def outputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            seen.append("out")
            return data

    service = publish(Service())
    service.addFilter(Tap())
    assert service._handle(b'Cs5"hello"a1{uw}z', None) == b'Rs7"Hello w"z'
    assert seen == ["in", "out"]
    service.removeFilter(service.filter)
    service.onBeforeInvoke = lambda name: seen.append(("before", name))
    service.onAfterInvoke = lambda name, args, byref, result: seen.append(("after", result))
    assert service._handle(b'Cs5"hello"a1{uw}z', None) == b'Rs7"Hello w"z'
    assert seen[2:] == [("before", "hello"), ("after", "Hello w")]


def test_a_failure_fires_on_send_error_once() -> None:
    errors: list = []
    service = publish(Service())
    service.onSendError = lambda e, context: errors.append((str(e), context))
    assert service._handle(b'Cs4"fail"a1{1}z', "ctx") == b'Es9"boom (1,)"z'
    assert errors == [("boom (1,)", "ctx")]


def test_a_subclass_answering_calls_itself_sees_every_call() -> None:
    seen: list = []

    class Counting(Service):
        def _answer(self, name: str, args: list, byref: bool, context: Any) -> bytes:
            seen.append(name)
            return super()._answer(name, args, byref, context)

    service = publish(Counting())
    assert service._handle(b'Cs5"hello"a1{uw}z', None) == b'Rs7"Hello w"z'
    assert seen == ["hello"]

"""Every hprose 1.4.3 service semantic still works under our dispatch, on both server transports.

Each test sends exact request bytes over a real socket (tests.support.hprose_servers) and
checks the exact reply, in a single call and inside a batch.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hprose.common import HproseFilter, HproseResultMode

from hprose_cluster.transport.tcp import TcpContext
from tests.support.hprose_servers import exchange
from tests.support.hprose_servers import server  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(60)


class Xor(HproseFilter):
    """Scrambles both directions, and notes the order filters run in."""

    def __init__(self, key: int, log: list[str]):
        self.key = key
        self.log = log

    def scramble(self, data: bytes) -> bytes:
        return bytes(b ^ self.key for b in data)

    def inputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
        self.log.append("in%d" % self.key)
        return self.scramble(data)

    def outputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
        self.log.append("out%d" % self.key)
        return self.scramble(data)


def test_filters_run_on_the_whole_request_and_reply_in_hprose_order(server: Any) -> None:
    log: list[str] = []
    first, second = Xor(1, log), Xor(2, log)
    server.addFilter(first)
    server.addFilter(second)
    request = b'Cs5"hello"a1{ua}Cs4"fail"z'
    reply = exchange(server, first.scramble(second.scramble(request)))
    assert second.scramble(first.scramble(reply)) == b'Rs7"Hello a"Es4"boom"z'
    assert log == ["in2", "in1", "out1", "out2"]  # input filters in reverse order
    assert server.filter is first
    server.removeFilter(first)
    server.filter = None
    assert exchange(server, request) == b'Rs7"Hello a"Es4"boom"z'


def test_missing_function_gets_the_name_as_sent_and_the_arguments(server: Any) -> None:
    server.addMissingFunction(lambda name, args: [name, args])
    assert exchange(server, b'Cs6"NoSuch"a2{1u2}Cs5"hello"a1{ub}z') == \
        b'Ra2{s6"NoSuch"a2{1u2}}Rs7"Hello b"z'
    assert exchange(server, b'z').endswith(b's7"appendx"u*}z')  # '*' is listed, as in 1.4.3


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def before(self, name: str, args: list, byref: bool, context: Any) -> None:
        self.events.append(("before", name, list(args), byref, type(context)))
        if name == "sum" and args == [6, 6]:
            raise ValueError("no sixes")

    def after(self, name: str, args: list, byref: bool, result: Any) -> None:
        self.events.append(("after", name, list(args), byref, result))

    def error(self, e: BaseException) -> None:
        self.events.append(("error", str(e)))


def test_invoke_events_with_bound_methods_and_errors_per_call(server: Any) -> None:
    recorder = Recorder()
    server.onBeforeInvoke = recorder.before
    server.onAfterInvoke = recorder.after
    server.onSendError = recorder.error
    assert server.onBeforeInvoke == recorder.before
    reply = exchange(server, b'Cs3"sum"a2{66}Cs7"appendx"a1{a{}}tCs4"fail"z')
    assert reply == b'Es8"no sixes"R1Aa1{a1{ux}}Es4"boom"z'
    context_type = TcpContext if server.scheme.startswith("tcp") else dict
    assert recorder.events == [
        ("before", "sum", [6, 6], False, context_type), ("error", "no sixes"),
        ("before", "appendx", [["x"]], True, context_type),
        ("after", "appendx", [["x"]], True, 1),
        ("before", "fail", [], False, context_type), ("error", "boom")]


def test_event_handlers_get_as_many_arguments_as_they_take(server: Any) -> None:
    seen: list[tuple] = []
    server.onBeforeInvoke = lambda: seen.append(("before",))
    server.onAfterInvoke = lambda name, args, byref, result, context: seen.append(
        ("after", name, result, context is not None))
    server.onSendError = lambda *everything: seen.append(("error", len(everything)))
    assert exchange(server, b'Cs3"sum"a2{12}Cs4"fail"z') == b'R3Es4"boom"z'
    assert seen == [("before",), ("after", "sum", 3, True), ("before",), ("error", 2)]
    server.onBeforeInvoke = server.onAfterInvoke = server.onSendError = None
    assert exchange(server, b'Cs3"sum"a2{12}z') == b'R3z'
    assert len(seen) == 4


def test_result_modes_alone_and_in_a_batch(server: Any) -> None:
    server.addFunction(lambda: b's2"ab"', "serialized", HproseResultMode.Serialized)
    server.addFunction(lambda: b'Rs2"ab"', "raw", HproseResultMode.Raw)
    server.addFunction(lambda: b'Rs2"ab"z', "whole", HproseResultMode.RawWithEndTag)
    server.addFunction(lambda: "text", "notbytes", HproseResultMode.Raw)
    for name in (b"serialized", b"raw", b"whole"):
        assert exchange(server, b'Cs%d"%s"z' % (len(name), name)) == b'Rs2"ab"z'
    reply = exchange(server, b'Cs10"serialized"Cs3"raw"Cs5"whole"Cs5"hello"a1{uc}z')
    assert reply == b'Rs2"ab"Rs2"ab"Rs2"ab"Rs7"Hello c"z'
    assert exchange(server, b'Cs8"notbytes"z').startswith(b'Es')


def test_simple_per_function_and_for_the_service(server: Any) -> None:
    def twice(s: str) -> list:
        return [s, s]

    server.addFunction(twice, "refs")
    server.addFunction(twice, "norefs", HproseResultMode.Normal, True)
    assert exchange(server, b'Cs4"refs"a1{s2"ab"}z') == b'Ra2{s2"ab"r1;}z'
    assert exchange(server, b'Cs6"norefs"a1{s2"ab"}z') == b'Ra2{s2"ab"s2"ab"}z'
    server.simple = True  # functions added with simple=None follow the service
    assert exchange(server, b'Cs4"refs"a1{s2"ab"}tz') == b'Ra2{s2"ab"s2"ab"}Aa1{s2"ab"}z'


def test_error_text_and_debug_traceback(server: Any) -> None:
    def fail2() -> None:
        raise RuntimeError("b😀m")

    server.addFunction(fail2)
    assert exchange(server, b'Cs5"fail2"z') == 'Es4"b😀m"z'.encode()
    server.debug = True
    reply = exchange(server, b'Cs5"fail2"Cs3"sum"a2{12}z').decode()
    assert reply.startswith("Es") and reply.endswith("R3z")
    assert "Traceback (most recent call last)" in reply and 'raise RuntimeError("b😀m")' in reply
    assert "RuntimeError: b😀m" in reply


class Greeter:
    greeting = "Hi"

    def greet(self, name: str) -> str:
        return "%s %s" % (self.greeting, name)

    def where(self, context: Any) -> str:
        return type(context).__name__

    @classmethod
    def kind(cls) -> str:
        return cls.__name__

    @staticmethod
    def twice(n: int) -> int:
        return 2 * n


def test_every_way_of_publishing(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    greeter = Greeter()
    server.addMethods(["greet"], greeter, "g")  # a string of aliases is a prefix
    server.addInstanceMethods(greeter, None, "obj")
    server.add(Greeter, "cls")  # class and static methods under a prefix
    server.addFunctions([len, abs], ["length", "magnitude"])

    def mainfunc(x: int) -> int:
        return x + 100

    monkeypatch.setattr(sys.modules["__main__"], "mainfunc", mainfunc, raising=False)
    server.addFunction("mainfunc")  # by name, from __main__, as hprose allows
    request = (b'Cs7"g_greet"a1{ua}Cs9"OBJ_GREET"a1{ub}Cs8"cls_kind"Cs9"cls_twice"a1{4}'
               b'Cs6"length"a1{s3"abc"}Cs9"magnitude"a1{i-5;}Cs8"mainfunc"a1{1}Cs9"obj_where"z')
    where = b"TcpContext" if server.scheme.startswith("tcp") else b"dict"
    assert exchange(server, request) == (b'Rs4"Hi a"Rs4"Hi b"Rs7"Greeter"R8R3R5Ri101;Rs%d"%s"z'
                                         % (len(where), where))


def test_context_is_passed_to_a_function_that_asks_for_it(server: Any) -> None:
    def port(greeting: str, context: Any) -> str:
        if isinstance(context, str):
            return "%s %s" % (greeting, context)
        if isinstance(context, TcpContext):
            return "%s %d" % (greeting, context.server.address[1])
        return "%s %s" % (greeting, context["SERVER_PORT"])

    server.addFunction(port)
    expected = ("hi %d" % server.address[1]).encode()
    assert exchange(server, b'Cs4"port"a1{s2"hi"}z') == b'Rs%d"%s"z' % (len(expected), expected)
    # given both arguments, the function is called with them (no context appended)
    assert exchange(server, b'Cs4"port"a2{s2"hi"s2"yo"}z') == b'Rs5"hi yo"z'

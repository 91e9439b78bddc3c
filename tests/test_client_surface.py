"""The hprose client surface of ClusterClient, HttpClient and TcpClient, against real servers.

All three are ``hprose.HproseClient`` subclasses (transport.base.BaseClient) and share one
contract: by-reference arguments come back in the caller's own list, unknown call options are
a TypeError, callbacks may be named functions of ``__main__``, and hprose's public methods are
all there.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator

import hprose
import pytest
from hprose.common import HproseException

from hprose_cluster import ClusterClient, ConfigError
from hprose_cluster.server import ClusterTcpServer
from hprose_cluster.transport.base import BaseClient
from hprose_cluster.transport.http import HttpClient
from tests.support.hprose_servers import VECTOR_FUNCTIONS, serve

pytestmark = pytest.mark.timeout(60)

KINDS = ("cluster", "http", "tcp")


@pytest.fixture(params=KINDS)
def client(request: pytest.FixtureRequest, etcd: Any, domain: str) -> Iterator[Any]:
    """A client of each kind, calling a server with the vector functions."""
    from hprose_cluster.transport.tcp import TcpClient

    if request.param == "cluster":
        server = ClusterTcpServer(domain, etcd=etcd.endpoint, ttl=2, heartbeat=0.5,
                                  drain_delay=0.05)
        for function in VECTOR_FUNCTIONS:
            server.addFunction(function)
        server.start(block=False)
        made: Any = ClusterClient(domain, etcd=etcd.endpoint)
    else:
        server = serve(request.param)
        made = HttpClient(server.url) if request.param == "http" else TcpClient(server.url)
    try:
        yield made
    finally:
        made.close()
        server.stop(drain_timeout=2)


def test_every_client_is_an_hprose_client(client: Any) -> None:
    assert isinstance(client, hprose.HproseClient)
    assert isinstance(client, hprose.Client)


def test_hprose_client_methods_are_all_reimplemented() -> None:
    public = {name for name in dir(hprose.HproseClient) if not name.startswith("_")}
    assert public == {"filter", "getFilter", "setFilter", "addFilter", "removeFilter", "invoke",
                      "setUri", "uri", "useService"}
    for name in public | {"__init__", "__getattr__", "_sendAndReceive"}:
        assert name in vars(BaseClient), name


def test_byref_values_come_back_in_the_callers_list(client: Any) -> None:
    args: list = [["a"]]
    inner = args[0]
    assert client.invoke("appendx", args, byref=True) == 2
    assert args == [["a", "x"]]
    assert inner == ["a"]  # the value is replaced by the server's, as hprose does
    assert client.invoke("appendx", args, byref=True) == 3
    assert args == [["a", "x", "x"]]
    untouched: list = [["a"]]
    assert client.invoke("appendx", untouched) == 2  # not by reference: the list stays
    assert untouched == [["a"]]
    assert client.invoke("appendx", (["a"],), byref=True) == 2  # a tuple cannot take them


def test_byref_in_callback_mode_hands_the_updated_list(client: Any) -> None:
    args: list = [["b"]]
    seen: list = []
    done = threading.Event()
    client.invoke("appendx", args, byref=True,
                  callback=lambda result, values: (seen.append((result, values)), done.set()))
    assert done.wait(10)
    assert seen == [(2, [["b", "x"]])] and seen[0][1] is args


def test_unknown_call_options_are_a_type_error_naming_them(client: Any) -> None:
    allowed = r"\(allowed: timeout, idempotent\)"
    name = type(client).__name__
    with pytest.raises(TypeError, match=r"%s.invoke\(\) got unknown call option\(s\) "
                                        r"'retries' %s" % (name, allowed)):
        client.invoke("hello", ["x"], retries=3)
    with pytest.raises(TypeError, match=r"'bogus', 'retries' " + allowed):
        client.hello("x", retries=3, bogus=True)
    with pytest.raises(TypeError, match="retries"):  # before any thread is started
        client.hello("x", retries=3, callback=lambda: None)
    assert client.hello("x", timeout=5, idempotent=True) == "Hello x"
    assert client.invoke("hello", ["y"], timeout=None, idempotent=False) == "Hello y"


def test_callback_and_onerror_given_by_name_in_main(client: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    main = sys.modules["__main__"]
    results: list = []
    done = threading.Event()
    monkeypatch.setattr(main, "on_result", lambda r: (results.append(r), done.set()),
                        raising=False)
    monkeypatch.setattr(main, "on_failure", lambda n, e: (results.append((n, str(e))),
                                                          done.set()), raising=False)
    for call in (lambda: client.hello("cb", callback="on_result"),
                 lambda: client.fail(callback="on_result", onerror="on_failure")):
        done.clear()
        thread = call()
        assert done.wait(10)
        thread.join(10)
    client.onError = "on_failure"  # the default onerror, by name too
    done.clear()
    client.fail(callback="on_result")
    assert done.wait(10)
    assert results == ["Hello cb", ("fail", "boom"), ("fail", "boom")]
    with pytest.raises(HproseException, match="callback must be callable"):
        client.hello("x", callback="no_such_function_in_main")
    with pytest.raises(HproseException, match="onerror must be callable"):
        client.hello("x", callback="on_result", onerror="no_such_function_in_main")


def test_proxies_filters_and_the_rest_of_the_surface(client: Any) -> None:
    assert client.useService().hello("p") == "Hello p"
    assert client.Hello("case") == "Hello case"
    with pytest.raises(AttributeError):
        client._no_such_private_attribute
    seen: list = []

    class Recorder:
        def outputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            seen.append(("out", data, context is client))
            return data

        def inputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            seen.append(("in", data))
            return data

    recorder = Recorder()
    client.filter = recorder
    assert client.filter is recorder and client.getFilter() is recorder
    assert client.echo("f") == "f"
    assert seen == [("out", b'Cs4"echo"a1{uf}z', True), ("in", b"Rufz")]
    client.removeFilter(recorder)
    client.addFilter(recorder)
    client.setFilter(None)
    assert client.getFilter() is None
    client.simple = True
    assert client.echo(["ab", "ab"]) == ["ab", "ab"]


def test_uri_and_set_uri(client: Any) -> None:
    if isinstance(client, ClusterClient):
        assert client.uri is None  # a domain, not a URL: any uri is ignored
        assert client.useService("http://elsewhere:1/").hello("d") == "Hello d"
        return
    url = client.uri
    assert url.startswith(("http://", "tcp"))
    client.setUri(url)  # the same URL is fine
    assert client.useService(url).hello("u") == "Hello u"
    with pytest.raises(ConfigError, match="cannot be pointed at 'tcp://127.0.0.1:1'"):
        client.useService("tcp://127.0.0.1:1")
    assert client._sendAndReceive(b'Cs5"hello"a1{ua}z') == b'Rs7"Hello a"z'


def test_result_modes_and_simple_per_call(client: Any) -> None:
    from hprose.common import HproseResultMode as Mode

    assert client.invoke("hello", ["a"], resultMode=Mode.Serialized) == b's7"Hello a"'
    assert client.invoke("hello", ["a"], resultMode=Mode.Raw) == b'Rs7"Hello a"'
    assert client.invoke("hello", ["a"], resultMode=Mode.RawWithEndTag) == b'Rs7"Hello a"z'
    args: list = [["a"]]
    assert client.invoke("appendx", args, byref=True, resultMode=Mode.Raw) == \
        b'R2Aa1{a2{uaux}}'  # raw: the caller's list is left as it is
    assert args == [["a"]]
    deep = ["ab"]
    for _ in range(600):  # deeper than hprose 1.4.3 could write
        deep = [deep, "ab"]
    assert client.invoke("echo", [deep], resultMode=Mode.Serialized).count(b"r") > 500
    assert client.invoke("echo", [deep], simple=True, resultMode=Mode.Serialized).count(b"r") == 0


def test_the_plain_call_path_sees_later_filters_and_takes_any_iterable(client: Any) -> None:
    """``client.name`` is kept after the first use and calls without options take a shortcut:
    a filter set afterwards still sees the bytes, and ``invoke`` still takes any iterable."""
    hello = client.hello
    assert hello("a") == "Hello a" and client.hello is hello
    seen: list = []

    class Recorder:
        def outputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            seen.append(data)
            return data

        def inputFilter(self, data: bytes, context: Any) -> bytes:  # noqa: N802
            return data

    client.addFilter(Recorder())
    assert hello("b") == "Hello b" and seen == [b'Cs5"hello"a1{ub}z']
    client.setFilter(None)
    assert client.invoke("hello", (c for c in ["g"])) == "Hello g"
    assert client.invoke("hello", ("t",)) == "Hello t" and len(seen) == 1

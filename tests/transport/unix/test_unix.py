"""hprose over unix sockets: the TCP transport's framing and lifecycle on AF_UNIX.

The wire is Go's TCP wire (shared/wire/WIRE.md); a raw AF_UNIX client sends the captured Go
frames and must get Go's replies byte for byte.  The rest is what a socket file adds: its
URL, its creation (stale files replaced, live ones refused) and its removal.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Iterator

import pytest

from hprose_cluster.errors import ConfigError, ConnectError
from hprose_cluster.transport import open_transport
from hprose_cluster.transport.unix import UnixClient, UnixServer, UnixTransport

from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)

H = bytes.fromhex
# Go's half-duplex frames (WIRE.md): Hello("world"), Sum(1,2), Fail() and the replies
GO_FRAMES = [
    (H("000000184373352248656c6c6f2261317b733522776f726c64227d7a"),
     H("00000012527331312248656c6c6f20776f726c64227a")),
    (H("0000000f4373332253756d2261327b31327d7a"), H("0000000352337a")),
    (H("0000000a437334224661696c227a"), H("0000000a45733422626f6f6d227a")),
]
# full duplex, two pipelined requests answered out of order (ids 1 and 2)
FD_SUM = H("8000000f000000014373332273756d2261327b31327d7a")


def make_server(path: str | None = None, **options: object) -> UnixServer:
    server = UnixServer(path, **options)  # type: ignore[arg-type]

    def hello(name: str) -> str:
        return "Hello " + name

    def sum(a: int, b: int) -> int:  # noqa: A001
        return a + b

    def fail() -> None:
        raise Exception("boom")

    def echo(value: object) -> object:
        return value

    for function in (hello, sum, fail, echo):
        server.addFunction(function)
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UnixServer]:
    server = make_server(str(tmp_path / "hello.sock"))
    server.start(block=False)
    yield server
    server.stop(drain_timeout=2)


def raw(server: UnixServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    assert server.path is not None
    sock.connect(server.path)
    return sock


def test_gos_tcp_frames_get_gos_replies_over_a_unix_socket(server: UnixServer) -> None:
    with raw(server) as sock:
        for request, reply in GO_FRAMES:
            sock.sendall(request)
            got = b""
            while len(got) < len(reply):
                got += sock.recv(len(reply) - len(got))
            assert got == reply
        sock.sendall(FD_SUM)
        assert sock.recv(100) == H("800000030000000152337a")


@pytest.mark.parametrize("full_duplex", [False, True], ids=["half", "full"])
def test_16_threads_and_a_1_mb_argument(server: UnixServer, full_duplex: bool) -> None:
    with UnixClient(server.url, timeout=20, full_duplex=full_duplex, pool_size=4) as client:
        big = "y" * 1_048_576
        assert client.echo(big) == big
        def work(n: int) -> None:
            for i in range(20):
                assert client.hello("%d-%d" % (n, i)) == "Hello %d-%d" % (n, i)

        errors = run_in_threads(work, 16)
        assert not errors, errors[:3]


def test_url_and_open_transport(server: UnixServer) -> None:
    assert server.url == "unix:" + str(server.path) and server.scheme == "unix"
    transport = open_transport(server.url, full_duplex=True, pool_size=2)
    assert isinstance(transport, UnixTransport) and transport.full_duplex
    transport.close()
    for url in ("unix://" + str(server.path), "unix://localhost" + str(server.path)):
        with UnixClient(url, timeout=5) as client:
            assert client.hello("spelled") == "Hello spelled"


@pytest.mark.parametrize("url", ["unix:relative.sock", "unix://host/tmp/a.sock", "tcp://h:1"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        UnixTransport(url)


def test_a_missing_or_dead_socket_is_a_connect_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectError) as missing:
        UnixClient("unix:%s" % (tmp_path / "none.sock"), timeout=2).hello("x")
    assert missing.value.sent is False
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "dead.sock"))  # a socket file nobody listens on
    dead.close()
    with pytest.raises(ConnectError) as refused:
        UnixClient("unix:%s" % (tmp_path / "dead.sock"), timeout=2).hello("x")
    assert refused.value.sent is False


def test_socket_file_lifecycle(tmp_path: Path) -> None:
    path = str(tmp_path / "life.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # left behind by a crashed server
    stale.close()
    first = make_server(path, mode=0o600)
    first.start(block=False)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        second = make_server(path)
        with pytest.raises(OSError, match="a server answers on it"):
            second.start(block=False)
        with UnixClient(first.url, timeout=5) as client:  # the live one is untouched
            assert client.hello("still") == "Hello still"
    finally:
        first.stop(drain_timeout=2)
    assert not os.path.exists(path)
    (tmp_path / "plain").write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        make_server(str(tmp_path / "plain")).start(block=False)
    assert (tmp_path / "plain").read_text() == "not a socket"


def test_default_socket_lives_in_a_temporary_folder_removed_on_stop() -> None:
    server = make_server()
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018 - no path before listening
    server.start(block=False)
    path = server.path
    assert path is not None and os.path.exists(path)
    with UnixClient(server.url, timeout=5) as client:
        assert client.hello("tmp") == "Hello tmp"
    server.stop(drain_timeout=2)
    assert not os.path.exists(os.path.dirname(path))


def test_too_long_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="longer than 107"):
        UnixServer("/tmp/" + "x" * 120)

"""Full-duplex requests run on their connection's thread (``tcp/inline.py``): a slow one must
not hold up the requests sent behind it on the same connection, whatever their mode, the back
pressure bound still holds, and stop() leaves no thread behind.  Raw sockets, so each frame
arrives on its own."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator

import pytest

from hprose_cluster.transport import framing
from hprose_cluster.transport.base import decode_reply, encode_request
from hprose_cluster.transport.tcp import TcpServer

from tests.support.cluster_procs import wait_until
from tests.support.tcp import make_server, our_threads

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[TcpServer]:
    server = make_server(max_pending=1)
    server.start(block=False)
    yield server
    server.stop(drain_timeout=2)


def _request(name: str, *args: Any) -> bytes:
    return encode_request(name, list(args), False, False)


def _frames(sock: socket.socket, count: int) -> list[framing.Frame]:
    decoder = framing.FrameDecoder()
    frames: list[framing.Frame] = []
    while len(frames) < count:
        frame = decoder.next_frame()
        if frame is not None:
            frames.append(frame)
            continue
        data = sock.recv(65536)
        assert data, "connection closed after %d frames" % len(frames)
        decoder.feed(data)
    return frames


def _value(frame: framing.Frame) -> Any:
    return decode_reply(frame.body, [], 0)


def test_a_slow_request_does_not_hold_up_those_behind_it(server: TcpServer) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(framing.encode_full(_request("slow", 1.5, "slow"), 1))
        assert wait_until(lambda: server.in_flight == 1, 5)
        started = time.monotonic()
        sock.sendall(framing.encode_full(_request("hello", "a"), 2))
        sock.sendall(framing.encode_half(_request("hello", "b")))
        sock.sendall(framing.encode_full(_request("hello", "c"), 3))
        first = _frames(sock, 3)
        fast = time.monotonic() - started
        last = _frames(sock, 1)
    replies = {f.request_id: _value(f) for f in first}
    assert replies == {2: "Hello a", None: "Hello b", 3: "Hello c"}, replies
    assert fast < 1.2, fast  # well before the slow one's 1.5 s
    assert last[0].request_id == 1 and _value(last[0]) == "slow"


def test_requests_one_at_a_time_are_answered_in_turn(server: TcpServer) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:  # type: ignore[arg-type]
        for n in range(1, 50):
            sock.sendall(framing.encode_full(_request("hello", str(n)), n))
            frame, = _frames(sock, 1)
            assert frame.request_id == n and _value(frame) == "Hello %d" % n


def test_back_pressure_while_a_helper_reads(server: TcpServer) -> None:
    """max_pending=1: the requests behind a slow one are executed one at a time by workers,
    and all are answered."""
    with socket.create_connection(server.address, timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(framing.encode_full(_request("slow", 0.5, "slow"), 1))
        assert wait_until(lambda: server.in_flight == 1, 5)
        for n in range(2, 12):
            sock.sendall(framing.encode_full(_request("slow", 0.02, n), n))
        replies = {f.request_id: _value(f) for f in _frames(sock, 11)}
    assert replies == {1: "slow", **{n: n for n in range(2, 12)}}


def test_stop_while_a_helper_reads_leaves_no_thread() -> None:
    before = our_threads()
    server = make_server()
    server.start(block=False)
    with socket.create_connection(server.address, timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(framing.encode_full(_request("slow", 0.5, "x"), 1))
        assert wait_until(lambda: server.in_flight == 1, 5)
        time.sleep(0.05)  # a helper is reading by now (it starts after a 5 ms tick)
        stopper = threading.Thread(target=server.stop, kwargs={"drain_timeout": 5})
        stopper.start()
        frame, = _frames(sock, 1)  # drained: the running request is answered
        assert _value(frame) == "x"
        stopper.join(10)
    assert not stopper.is_alive()
    assert not our_threads() - before, our_threads() - before


def test_a_connection_back_from_idle_is_watched_again(server: TcpServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle connection leaves the watchdog's set (and the watchdog ends); its next inline
    request puts it back, so a slow one there still gets a helper."""
    from hprose_cluster.transport.tcp import inline

    monkeypatch.setattr(inline, "_IDLE_TICKS", 4)
    runner = server._inline
    with socket.create_connection(server.address, timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(framing.encode_full(_request("hello", "a"), 1))
        assert _value(_frames(sock, 1)[0]) == "Hello a"
        assert wait_until(lambda: runner._watchdog is None and not runner._watched, 5)
        sock.sendall(framing.encode_full(_request("slow", 1.5, "slow"), 2))
        assert wait_until(lambda: server.in_flight == 1, 5)
        started = time.monotonic()
        sock.sendall(framing.encode_full(_request("hello", "b"), 3))
        frame, = _frames(sock, 1)
        fast = time.monotonic() - started
        assert frame.request_id == 3 and _value(frame) == "Hello b"
        assert fast < 1.2, fast
        frame, = _frames(sock, 1)
        assert frame.request_id == 2 and _value(frame) == "slow"

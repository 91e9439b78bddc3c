"""``TimedSocket`` and ``recv_before``: a blocking socket whose receives end by a deadline,
neither early nor late, however the kernel timeout left by an earlier call compares.  Real
socket pairs; the peer writes from a timer."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from hprose_cluster.transport.streams import KERNEL_TIMEOUT_MARGIN, TimedSocket, recv_before

pytestmark = pytest.mark.timeout(30)

# how late a busy machine may wake us (0.5 s was little at load 4-10 with stolen CPU); the
# deadline must never come early, and a receive left to an earlier ~30 s kernel timeout
# still fails the upper bound by far
LATE = 1.0


@pytest.fixture
def pair() -> Iterator[tuple[TimedSocket, socket.socket]]:
    ours, theirs = socket.socketpair()
    timed = TimedSocket(fileno=ours.detach())
    timed.watch()
    try:
        yield timed, theirs
    finally:
        timed.close()
        theirs.close()


def _timed_out_after(sock: TimedSocket, seconds: float) -> float:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        recv_before(sock, started + seconds)
    return time.monotonic() - started


@pytest.mark.parametrize("seconds", [0.01, 0.03, 0.15])
def test_a_deadline_ends_the_receive_on_time(pair, seconds: float) -> None:
    sock, _ = pair
    elapsed = _timed_out_after(sock, seconds)
    assert seconds <= elapsed < seconds + LATE, elapsed


def test_a_nearer_deadline_than_the_timeout_left_set_is_kept(pair) -> None:
    sock, theirs = pair
    theirs.send(b"x")
    assert recv_before(sock, time.monotonic() + 30) == b"x"  # sets a ~30 s kernel timeout
    assert sock.rcvtimeo > 29
    elapsed = _timed_out_after(sock, 0.2)
    assert 0.2 <= elapsed < 0.2 + LATE, elapsed
    assert sock.rcvtimeo < 0.2


def test_a_later_deadline_than_the_timeout_left_set_is_not_cut_short(pair) -> None:
    sock, theirs = pair
    sock.set_rcvtimeo(0.05)  # left by an earlier call with a short deadline
    timer = threading.Timer(0.3, theirs.send, (b"late",))
    timer.start()
    try:
        started = time.monotonic()
        assert recv_before(sock, started + 5) == b"late"
        assert time.monotonic() - started >= 0.29
    finally:
        timer.cancel()
    elapsed = _timed_out_after(sock, 0.4)
    assert 0.4 <= elapsed < 0.4 + LATE, elapsed


def test_no_deadline_blocks_until_data_and_clears_the_kernel_timeout(pair) -> None:
    sock, theirs = pair
    sock.set_rcvtimeo(0.05)
    timer = threading.Timer(0.2, theirs.send, (b"y",))
    timer.start()
    try:
        assert recv_before(sock, None) == b"y"
    finally:
        timer.cancel()
    assert sock.rcvtimeo == 0.0


def test_the_kernel_timeout_stays_short_of_the_deadline(pair) -> None:
    """The kernel counts SO_RCVTIMEO in ticks: the value set ends a margin before."""
    sock, theirs = pair
    theirs.send(b"z")
    recv_before(sock, time.monotonic() + 1.0)
    assert 0 < sock.rcvtimeo <= 1.0 - KERNEL_TIMEOUT_MARGIN


def test_an_expired_deadline_receives_nothing(pair) -> None:
    sock, theirs = pair
    theirs.send(b"waiting")
    with pytest.raises(TimeoutError):
        recv_before(sock, time.monotonic() - 0.001)
    assert recv_before(sock, time.monotonic() + 1) == b"waiting"


def test_readable_now_sees_input_and_eof(pair) -> None:
    sock, theirs = pair
    assert not sock.readable_now()
    theirs.send(b"stray")
    assert sock.readable_now()
    sock.recv(10)
    assert not sock.readable_now()
    theirs.close()
    assert sock.readable_now()

"""Deadline: one value per call, asked what remains."""

from __future__ import annotations

import time

import pytest

from hprose_cluster.deadline import Deadline


def test_no_deadline_never_expires() -> None:
    deadline = Deadline(None)
    assert deadline.remaining() is None and not deadline.expired()
    assert deadline.socket_timeout() is None and deadline.cap(3) == 3
    assert deadline.within(None) is deadline and deadline.within(2).timeout == 2


def test_a_deadline_counts_down_and_then_raises_for_sockets() -> None:
    deadline = Deadline(0.05)
    assert 0 < deadline.remaining() <= 0.05 and deadline.cap(10) <= 0.05  # type: ignore[operator]
    time.sleep(0.06)
    assert deadline.expired() and deadline.remaining() == 0.0
    with pytest.raises(TimeoutError):
        deadline.socket_timeout()
    assert deadline.describe() == "0.05s"


def test_within_never_ends_after_the_outer_deadline() -> None:
    outer = Deadline(0.2)
    assert outer.within(10).remaining() <= 0.2  # type: ignore[operator]
    assert outer.within(0.05).timeout == 0.05

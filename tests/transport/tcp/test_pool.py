"""The half-duplex pool serves waiting calls in arrival order (a unit of logic: the sockets are
real socket pairs, the server is not needed)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hprose_cluster.deadline import Deadline
from hprose_cluster.errors import CallTimeout
from hprose_cluster.transport.tcp.pool import ConnectionPool

from tests.support.cluster_procs import wait_until


class _Sockets:
    def __init__(self) -> None:
        self.made: list[socket.socket] = []
        self.peers: list[socket.socket] = []

    def connect(self, deadline: Deadline) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.made.append(ours)
        self.peers.append(theirs)
        return ours

    def close(self) -> None:
        for sock in self.made + self.peers:
            sock.close()


@pytest.fixture
def sockets():  # type: ignore[no-untyped-def]
    made = _Sockets()
    yield made
    made.close()


def test_waiters_are_served_in_arrival_order_and_the_releaser_queues_behind(sockets) -> None:
    pool = ConnectionPool("tcp://test:1", 1, sockets.connect, lambda sock: False)
    held = pool.acquire(Deadline(5))
    order: list[int] = []

    def call(n: int) -> None:
        sock = pool.acquire(Deadline(5))
        order.append(n)
        time.sleep(0.01)
        pool.release(sock)

    threads = []
    for n in range(5):
        thread = threading.Thread(target=call, args=(n,))
        thread.start()
        threads.append(thread)
        assert wait_until(lambda: len(pool._waiters) == n + 1, 5)
    pool.release(held)
    again = pool.acquire(Deadline(5))  # the releaser asks at once: after the five waiters
    order.append(99)
    pool.release(again)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4, 99]
    assert len(sockets.made) == 1  # one connection, handed from call to call


def test_a_waiter_that_times_out_leaves_the_queue_unsent(sockets) -> None:
    pool = ConnectionPool("tcp://test:1", 1, sockets.connect, lambda sock: False)
    held = pool.acquire(Deadline(5))
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        pool.acquire(Deadline(0.2))
    assert caught.value.sent is False and "tcp://test:1" in str(caught.value)
    assert 0.15 < time.monotonic() - started < 2
    assert not pool._waiters
    pool.release(held)
    assert pool.acquire(Deadline(1)) is held


def test_a_discarded_connection_lets_the_first_waiter_open_a_new_one(sockets) -> None:
    pool = ConnectionPool("tcp://test:1", 1, sockets.connect, lambda sock: False)
    held = pool.acquire(Deadline(5))
    got: list[socket.socket] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(Deadline(5))))
    waiter.start()
    assert wait_until(lambda: len(pool._waiters) == 1, 5)
    pool.discard(held)
    waiter.join(5)
    assert got and got[0] is not held and len(sockets.made) == 2


def test_the_pool_grows_to_the_callers_up_to_its_size(sockets) -> None:
    pool = ConnectionPool("tcp://test:1", 3, sockets.connect, lambda sock: False)
    held = [pool.acquire(Deadline(5)) for _ in range(3)]
    assert pool.open_count == 3
    with pytest.raises(CallTimeout):
        pool.acquire(Deadline(0.05))
    for sock in held:
        pool.release(sock)
    assert pool.open_count == 3 and len(sockets.made) == 3

"""The count of requests in flight (``transport/inflight.py``): a unit of logic, on a socket
pair so that a shut-down connection is a real one."""

from __future__ import annotations

import socket

from hprose_cluster.transport.connection import Connection, State
from hprose_cluster.transport.inflight import InFlight


def _connection(counts: InFlight) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    conn = Connection(ours, None)
    counts._connections.add(conn)
    return conn, theirs


def test_a_request_here_is_counted_and_keeps_its_connection_open() -> None:
    counts = InFlight()
    conn, peer = _connection(counts)
    with conn.sock, peer:
        assert counts.begin_here(conn)
        assert counts.in_flight == 1 and conn.in_flight
        counts.shut_if_idle(conn)  # stop() quiescing: this one is busy
        assert not conn.shut
        peer.settimeout(0.2)
        conn.sock.sendall(b"reply")  # still writable
        assert peer.recv(16) == b"reply"
        counts.end_here(conn)
        assert counts.in_flight == 0 and not conn.in_flight
        counts.shut_if_idle(conn)
        assert conn.shut
        assert not counts.begin_here(conn)  # read after the shut-down: not executed
        assert counts.in_flight == 0


def test_both_counts_add_up_and_stopping_closes_after_the_reply() -> None:
    counts = InFlight()
    conn, peer = _connection(counts)
    with conn.sock, peer:
        assert counts.request_started(conn) and counts.begin_here(conn)
        assert counts.in_flight == 2
        counts.request_finished(conn)
        counts.end_here(conn)
        assert counts.in_flight == 0
        assert counts.keep_open(conn)
        counts._state = State.STOPPING
        assert not counts.keep_open(conn)  # it has answered: closed at this boundary

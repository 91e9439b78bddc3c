"""A pooled half-duplex connection the server closed: the next request goes on a new one when
(and only when) the server cannot have read it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hprose_cluster.errors import TransportError
from hprose_cluster.transport import framing
from hprose_cluster.transport.tcp import TcpClient

pytestmark = pytest.mark.timeout(60)

REPLY = b'Rs7"Hello w"z'


class _OneShotServer:
    """Answers the first request of each connection, then closes it (``read_more``: it reads
    the next request first, then closes without answering: that request may have run)."""

    def __init__(self, read_more: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.read_more = read_more
        self.requests = 0
        self.connections = 0
        self.closed = 0  # connections this server has closed
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_frame(self, conn: socket.socket) -> framing.Frame | None:
        decoder = framing.FrameDecoder(1 << 20)
        while True:
            data = conn.recv(65536)
            if not data:
                return None
            decoder.feed(data)
            frame = decoder.next_frame()
            if frame is not None:
                with self._lock:
                    self.requests += 1
                return frame

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            frame = self._read_frame(conn)
            if frame is not None:
                conn.sendall(framing.encode(REPLY, frame.request_id))
                if self.read_more:
                    self._read_frame(conn)
        with self._lock:
            self.closed += 1

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("full_duplex", [False, True])
def test_a_connection_closed_right_after_its_reply_is_replaced_without_a_sent_error(
        full_duplex: bool) -> None:
    """What a stopping server does: it answers, then closes at once; a caller calling again at
    once meets the closed connection with its next request, which the server never reads."""
    server = _OneShotServer()
    try:
        with TcpClient(server.url, timeout=5, full_duplex=full_duplex) as client:
            for _ in range(50):
                assert client.hello("w") == "Hello w"
            assert server.requests == 50 and server.connections >= 50
    finally:
        server.close()


@pytest.mark.parametrize("full_duplex", [False, True])
def test_a_request_the_server_read_before_closing_is_a_sent_failure(full_duplex: bool) -> None:
    server = _OneShotServer(read_more=True)
    try:
        with TcpClient(server.url, timeout=5, full_duplex=full_duplex) as client:
            assert client.hello("w") == "Hello w"
            # the server reads this one, then closes without a reply: it may have run
            with pytest.raises(TransportError) as caught:
                client.hello("w")
            assert caught.value.sent is True
            assert server.requests == 2 and server.connections == 1
    finally:
        server.close()


def test_a_long_idle_connection_is_looked_at_before_it_is_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hprose_cluster.transport.tcp import client as tcp_client

    server = _OneShotServer()
    try:
        with TcpClient(server.url, timeout=5) as client:
            client.transport.pool._check_after = 0.0  # every reuse is checked first
            assert client.hello("w") == "Hello w"
            # the server has closed the connection (not only read the request: a thread
            # descheduled between its reply and its close on a loaded machine closed it after
            # a fixed 0.05 s), and its FIN reaches us before the next call
            deadline = time.monotonic() + 5
            while server.closed < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.closed == 1
            time.sleep(0.05)
            calls = []
            monkeypatch.setattr(tcp_client, "refused_unread",
                                lambda *a: calls.append(a) or False)
            # the poll sees the close first: the request goes on a new connection at once,
            # without meeting the closed one
            assert client.hello("w") == "Hello w"
            assert server.connections == 2 and not calls
    finally:
        server.close()

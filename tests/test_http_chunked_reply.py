"""HttpClient reads a chunked reply to the end (gunicorn's sync workers answer an hprose
call with ``Transfer-Encoding: chunked`` and ``Connection: close``)."""

from __future__ import annotations

import socket
import threading

import pytest

from hprose_cluster.transport.http import HttpClient

pytestmark = pytest.mark.timeout(60)


def _serve_chunked(sock: socket.socket, calls: int) -> None:
    for _ in range(calls):
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0])
            while len(body) < length:
                body += conn.recv(4096)
            reply = b'Rs11"Hello chunk"z'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/hprose\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(reply), reply))


def test_a_chunked_reply_with_connection_close_is_read_whole():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = threading.Thread(target=_serve_chunked, args=(sock, 2), daemon=True)
        server.start()
        client = HttpClient("http://127.0.0.1:%d/" % sock.getsockname()[1], timeout=10)
        try:
            assert client.hello("x") == "Hello chunk"
            assert client.hello("y") == "Hello chunk"  # a new connection, as the reply said
        finally:
            client.close()
        server.join(10)

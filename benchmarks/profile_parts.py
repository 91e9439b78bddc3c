"""What each piece of one small hprose call costs on its own, in CPU microseconds.

    python benchmarks/profile_parts.py            # every part, best of 5 repeats
    python benchmarks/profile_parts.py --number 20000

cProfile doubles the cost of every Python call, so its times cannot be added up.  Here each
step a ``hello("w")`` goes through in ``TcpClient``/``TcpServer`` and ``HttpClient``/
``HttpServer`` is run alone in a loop (``time.thread_time``, best of ``--repeat``), without
the profiler: the encoder, the decoder, hprose's service dispatch, the frame reader, the
locks and condition variables around a call, ``settimeout``, the poll before reusing a pooled
connection, a socket call in timeout mode against one in blocking mode.  Sockets are local
socket pairs; nothing listens on the network.  The sum of a side's parts, compared with its
CPU per call in section 7, shows what is left (the interpreter's own loop, the GIL hand-off,
scheduling).  Parts reach into private names of the transports; a part whose names moved is
printed as skipped, not fatal.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import threading
import time
from io import BytesIO
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REQUEST = b'Cs5"hello"a1{uw}z'
REPLY = b'Rs7"Hello w"z'
_KEEP: list[socket.socket] = []  # peers of socket pairs, open until the process exits


def hello(name: str) -> str:
    return "Hello " + name


def cost(step: Callable[[], Any], number: int, repeat: int) -> float:
    """Best CPU seconds per run of ``step`` over ``repeat`` loops of ``number`` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for _ in range(number):
            step()
        best = min(best, (time.thread_time() - started) / number)
    return best


class _Replay:
    """A stream whose every recv() returns the same bytes (a frame arriving whole)."""

    def __init__(self, data: bytes):
        self.data = data

    def recv(self, _size: int) -> bytes:
        return self.data


def _drained_pair() -> tuple[socket.socket, socket.socket, Callable[[], None]]:
    """A socket pair and a step that reads what the other end wrote (to keep buffers empty)."""
    a, b = socket.socketpair()
    b.setblocking(False)

    def drain() -> None:
        try:
            while b.recv(65536):
                pass
        except BlockingIOError:
            pass
    return a, b, drain


def parts() -> list[tuple[str, str, Callable[[], Any] | str]]:
    """(side, what, step or the reason it was skipped)."""
    out: list[tuple[str, str, Callable[[], Any] | str]] = []

    def add(side: str, what: str, make: Callable[[], Callable[[], Any]]) -> None:
        try:
            out.append((side, what, make()))
        except Exception as error:  # a moved name: report, do not fail the rest
            out.append((side, what, "skipped: %s: %s" % (type(error).__name__, error)))

    # --- both sides: encoding -------------------------------------------------------------
    from hprose_cluster.transport import base

    add("client", "encode_request('hello', ['w'])",
        lambda: lambda: base.encode_request("hello", ["w"], False, False))
    add("client", "decode_reply(b'Rs7\"Hello w\"z')",
        lambda: lambda: base.decode_reply(REPLY, ["w"], 0))

    class _Canned(base.BaseClient):
        def _round_trip(self, request: bytes, deadline: Any, **options: Any) -> bytes:
            return REPLY

    canned = _Canned()
    add("client", "BaseClient: client.hello('w') over a transport that answers at once "
                  "(encode + decode + call path)", lambda: lambda: canned.hello("w"))
    add("client", "codec.encode_call('hello', ('w',)) (the plain call's encoder)",
        lambda: lambda: base.encode_call("hello", ("w",)))

    # --- server: dispatch -----------------------------------------------------------------
    import hprose

    def make_service_handle() -> Callable[[], Any]:
        service = hprose.HproseService()
        service.addFunction(hello)
        assert service._handle(REQUEST, None) == REPLY
        return lambda: service._handle(REQUEST, None)

    add("server", "hprose HproseService._handle(request) (decode, dispatch, encode)",
        make_service_handle)

    def make_tcp_server_handle() -> Callable[[], Any]:
        from hprose_cluster.transport.tcp import TcpServer

        server = TcpServer("127.0.0.1", 0)
        server.add(hello)
        assert server._handle(REQUEST, None) == REPLY
        return lambda: server._handle(REQUEST, None)

    add("server", "TcpServer._handle(request) (the same, with compat patches)",
        make_tcp_server_handle)

    # --- framing --------------------------------------------------------------------------
    from hprose_cluster.deadline import Deadline
    from hprose_cluster.transport import framing, streams

    def make_reader() -> Callable[[], Any]:
        replay = _Replay(framing.encode_half(REQUEST))
        reader = streams.FrameReader(replay, framing.DEFAULT_MAX_FRAME)  # type: ignore[arg-type]
        return reader.read_frame

    add("both", "streams.FrameReader.read_frame() of a frame arriving whole (Python only)",
        make_reader)

    def make_new_reader() -> Callable[[], Any]:
        replay = _Replay(framing.encode_half(REPLY))
        return lambda: streams.FrameReader(replay,  # type: ignore[arg-type]
                                           framing.DEFAULT_MAX_FRAME).read_frame()

    add("client", "a new FrameReader per call + read_frame() (the TLS half-duplex client)",
        make_new_reader)

    def make_decoder() -> Callable[[], Any]:
        frame = framing.encode_half(REPLY)
        decoder = framing.FrameDecoder(framing.DEFAULT_MAX_FRAME)

        def step() -> Any:
            decoder.feed(frame)
            return decoder.next_frame()
        return step

    add("both", "framing.FrameDecoder feed + next_frame of a whole frame", make_decoder)
    add("both", "framing.encode_half(body)", lambda: lambda: framing.encode_half(REPLY))

    # --- sockets --------------------------------------------------------------------------
    def make_send(timeout: float | None) -> Callable[[], Any]:
        a, _b, drain = _drained_pair()
        a.settimeout(timeout)
        n = [0]

        def step() -> None:
            a.sendall(REPLY)
            n[0] += 1
            if n[0] % 64 == 0:
                drain()
        return step

    add("both", "sock.sendall(17 bytes), blocking socket (incl. draining the peer)",
        lambda: make_send(None))
    add("client", "sock.sendall(17 bytes), socket with a timeout (poll first)",
        lambda: make_send(30.0))

    def make_recv(timeout: float | None) -> Callable[[], Any]:
        a, b = socket.socketpair()
        a.settimeout(timeout)

        def step() -> None:
            b.send(REPLY)
            a.recv(65536)
        return step

    add("both", "peer.send + sock.recv, blocking socket", lambda: make_recv(None))
    add("client", "peer.send + sock.recv, socket with a timeout (poll first)",
        lambda: make_recv(30.0))

    def make_settimeout() -> Callable[[], Any]:
        a, b = socket.socketpair()
        _KEEP.append(b)
        return lambda: a.settimeout(29.9)

    add("client", "sock.settimeout(x) (an ioctl each)", make_settimeout)

    def make_poll() -> Callable[[], Any]:
        from hprose_cluster.transport.streams import TimedSocket
        from hprose_cluster.transport.tcp.stale import has_pending_input

        a, b = socket.socketpair()
        _KEEP.append(b)
        timed = TimedSocket(a.family, a.type, a.proto, a.detach())
        _KEEP.append(timed)
        timed.watch()
        assert not has_pending_input(timed)
        return lambda: has_pending_input(timed)

    add("client", "stale.has_pending_input(sock) (poll(0) before reusing a connection idle "
                  "for a second or more)",
        make_poll)

    def make_send_before() -> Callable[[], Any]:
        a, _b, drain = _drained_pair()
        n = [0]

        def step() -> None:
            streams.send_before(a, REPLY, Deadline(30.0))
            n[0] += 1
            if n[0] % 64 == 0:
                drain()
        return step

    add("server", "streams.send_before(sock, reply, deadline) (incl. draining the peer)",
        make_send_before)

    # --- locks ----------------------------------------------------------------------------
    cond = threading.Condition()

    def cond_step() -> None:
        with cond:
            cond.notify()

    add("both", "with Condition: notify() (pool acquire/release, in-flight count)",
        lambda: cond_step)
    lock = threading.Lock()

    def lock_step() -> None:
        with lock:
            pass

    add("both", "with Lock: pass", lambda: lock_step)

    def make_pool_cycle() -> Callable[[], Any]:
        from hprose_cluster.transport.tcp import TcpTransport

        transport = TcpTransport("tcp://127.0.0.1:9")
        a, b = socket.socketpair()
        _KEEP.append(b)  # the peer stays open, so the pooled end is not readable
        pool = transport.pool
        pool._open.add(a)
        pool._idle.append((a, time.monotonic()))
        forever = Deadline(None)

        def step() -> None:
            pool.release(pool.acquire(forever))
        return step

    add("client", "ConnectionPool.acquire + release of an idle pooled connection "
                  "(a lock twice, the stale check)", make_pool_cycle)

    def make_event() -> Callable[[], Any]:
        def step() -> None:
            event = threading.Event()
            event.set()
            event.wait(30)
        return step

    add("client", "threading.Event(): set() then wait() (a full-duplex call's hand-off, "
                  "no thread switch)", make_event)

    def make_begin_end() -> Callable[[], Any]:
        from hprose_cluster.transport.tcp import TcpServer

        server = TcpServer("127.0.0.1", 0)
        begin, end = server._tcp_begin, server._tcp_end  # type: ignore[attr-defined]

        def step() -> None:
            begin()
            end()
        return step

    add("server", "TcpServer._tcp_begin + _tcp_end (in-flight count, Condition twice)",
        make_begin_end)

    def make_context() -> Callable[[], Any]:
        from hprose_cluster.transport.tcp import TcpContext

        return lambda: TcpContext(None, ("127.0.0.1", 1), None)  # type: ignore[arg-type]

    add("server", "TcpContext(...) per request", make_context)
    # --- what fast paths could cost (benchmarks/prototypes.py) ----------------------------
    import prototypes

    assert prototypes.encode_call("hello", ["w"]) == base.encode_request("hello", ["w"],
                                                                         False, False)
    assert prototypes.decode_string_reply(REPLY) == "Hello w"
    assert prototypes.dispatch(REQUEST, {"hello": hello}) == REPLY
    add("client", "prototype: encode_call('hello', ['w']) (scalar fast path)",
        lambda: lambda: prototypes.encode_call("hello", ["w"]))
    add("client", "prototype: decode_string_reply(reply)",
        lambda: lambda: prototypes.decode_string_reply(REPLY))
    add("server", "prototype: dispatch(request) (parse, call, encode the reply)",
        lambda: lambda: prototypes.dispatch(REQUEST, {"hello": hello}))
    http_request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:40000\r\nAccept-Encoding: identity\r\n"
                    b"Content-Type: application/hprose\r\nContent-Length: 17\r\n\r\n")

    def email_head() -> Any:
        import http.client

        stream = BytesIO(http_request)
        stream.readline()
        headers = http.client.parse_headers(stream)
        return headers.get("Content-Length"), headers.get_all("Transfer-Encoding")

    add("server", "http.client.parse_headers (email package) of a 4-header request head",
        lambda: email_head)
    add("server", "prototype: parse_head of the same head (split, partition)",
        lambda: lambda: prototypes.parse_head(http_request[:-4]))

    def email_date() -> Callable[[], Any]:
        import email.utils

        return lambda: email.utils.formatdate(time.time(), usegmt=True)

    add("server", "Date header: email.utils.formatdate per request", email_date)
    http_reply = (b"HTTP/1.1 200 OK\r\nServer: hprose-cluster\r\nDate: Mon, 01 Dec 2026 09:00:00"
                  b" GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + REPLY)

    def make_response() -> Callable[[], Any]:
        import http.client

        class _Sock:
            def makefile(self, mode: str) -> BytesIO:
                return BytesIO(http_reply)

        def step() -> bytes:
            response = http.client.HTTPResponse(_Sock())  # type: ignore[arg-type]
            response.begin()
            return response.read()
        return step

    add("client", "http.client.HTTPResponse begin() + read() of a 4-header reply",
        make_response)

    def make_request() -> Callable[[], Any]:
        import http.client

        class _Sink:
            def sendall(self, data: bytes) -> None:
                pass

        connection = http.client.HTTPConnection("127.0.0.1", 40000)
        connection.sock = _Sink()  # type: ignore[assignment]

        def step() -> None:
            connection.request("POST", "/", body=REQUEST,
                               headers={"Content-Type": "application/hprose"})
            connection._HTTPConnection__state = "Idle"  # type: ignore[attr-defined]
            connection._HTTPConnection__response = None  # type: ignore[attr-defined]
        return step

    add("client", "http.client.HTTPConnection.request() (no network)", make_request)
    prefix = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:40000\r\nContent-Type: application/hprose\r\n"
    add("client", "prototype: prebuilt request head + Content-Length + body",
        lambda: lambda: prefix + b"Content-Length: %d\r\n\r\n" % len(REQUEST) + REQUEST)
    add("both", "time.monotonic()", lambda: time.monotonic)
    pair = socket.socketpair()
    _KEEP.extend(pair)
    add("both", "select.poll() + register + poll(0)", lambda: lambda: _poll_once(pair[0]))
    add("both", "BytesIO(data).read(1)", lambda: lambda: BytesIO(REQUEST).read(1))
    return out


def _poll_once(sock: socket.socket) -> Any:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller.poll(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=10000, help="runs per repeat")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    number = max(100, min(args.number, 200_000))
    print("| side | part | CPU us |")
    print("|---|---|---:|")
    for side, what, step in parts():
        if isinstance(step, str):
            print("| %s | %s | %s |" % (side, what, step))
            continue
        try:
            us = "%.2f" % (cost(step, number, args.repeat) * 1e6)
        except Exception as error:  # a part that no longer works as written: say so
            us = "failed: %s: %s" % (type(error).__name__, error)
        print("| %s | %s | %s |" % (side, what, us), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TCP transport, server side: signals, drain, TLS, hostile and stalled peers."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hprose_cluster.errors import CallTimeout, ConfigError, ConnectError, TransportError
from hprose_cluster.transport import framing
from hprose_cluster.transport.tcp import TcpClient, TcpServer

from tests.support.cluster_procs import wait_until
from tests.support.tcp import make_server, our_threads
from tests.support.threads import run_in_threads

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]


SERVER_SCRIPT = textwrap.dedent("""
    import sys, time
    from hprose_cluster.transport.tcp import TcpServer
    server = TcpServer("127.0.0.1", int(sys.argv[1]))
    def hello(name):
        return "Hello " + name
    def slow(seconds):
        print("SLOW", flush=True)
        time.sleep(seconds)
        return seconds
    server.add(hello)
    server.add(slow)
    server._on_listening = lambda: print("READY", server.address[1], flush=True)
    server.start()
    print("RETURNED", flush=True)
""")



def spawn_server(port: int = 0) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(port)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["READY"], line
    return proc, int(line[1])


def test_server_killed_mid_call_then_restarted() -> None:
    proc, port = spawn_server()
    url = "tcp://127.0.0.1:%d" % port
    try:
        for full_duplex in (False, True):
            with TcpClient(url, timeout=10, full_duplex=full_duplex) as client:
                assert client.hello("a") == "Hello a"
                outcome: list[BaseException] = []

                def call() -> None:
                    try:
                        client.slow(5)
                    except BaseException as error:
                        outcome.append(error)

                caller = threading.Thread(target=call)
                caller.start()
                assert proc.stdout is not None and proc.stdout.readline().strip() == "SLOW"
                started = time.monotonic()
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                proc.stdout.close()
                caller.join(5)
                assert time.monotonic() - started < 3
                assert len(outcome) == 1 and type(outcome[0]) is TransportError
                assert outcome[0].sent is True and url in str(outcome[0])
                proc, again = spawn_server(port)  # same port
                assert again == port
                assert client.hello("b") == "Hello b"
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_blocking_start_stops_gracefully_on_signal(sig: int) -> None:
    proc, port = spawn_server()
    try:
        with TcpClient("tcp://127.0.0.1:%d" % port, timeout=5) as client:
            assert client.hello("x") == "Hello x"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "RETURNED"
        assert proc.returncode == 0
    finally:
        proc.kill()


def test_close_leaves_no_thread_behind() -> None:
    before = our_threads()
    server = make_server()
    server.start(block=False)
    for full_duplex in (False, True):
        client = TcpClient(server.url, timeout=5, full_duplex=full_duplex)
        assert client.hello("x") == "Hello x"
        assert client.slow(0, 1) == 1
        client.close()
        client.close()
    with socket.create_connection(server.address) as raw:  # type: ignore[arg-type]
        raw.sendall(framing.encode_full(b'Cs5"hello"a1{s1"x"}z', 7))
        assert raw.recv(100)
        assert our_threads() - before
        server.stop()
        server.stop()  # idempotent
    assert not our_threads() - before, our_threads() - before


def test_stop_drains_in_flight_calls_and_runs_hooks() -> None:
    calls: list[str] = []

    class Hooked(TcpServer):
        def _on_listening(self) -> None:
            calls.append("listening:%d" % self.address[1])  # type: ignore[index]

        def _before_stop(self) -> None:
            calls.append("before_stop:%d" % self.in_flight)

    server = Hooked("127.0.0.1", 0)
    server.add(lambda s: time.sleep(s) or s, "slow")
    server.start(block=False)
    results: list[object] = []
    with TcpClient(server.url, timeout=5, full_duplex=True) as client:
        # wait for the call to run (a fixed 0.1 s could end before a loaded machine got it
        # to the server), and let it last 1 s so that stop() comes while it is in flight
        caller = threading.Thread(target=lambda: results.append(client.slow(1.0)))
        caller.start()
        assert wait_until(lambda: server.in_flight == 1, 5)
        server.stop(drain_timeout=5)
        caller.join(5)
    assert results == [1.0]
    assert calls == ["listening:%d" % server.address[1], "before_stop:1"]  # type: ignore[index]
    with pytest.raises(ConnectError):
        TcpClient(server.url, timeout=1).hello("x")


# --------------------------------------------------------------------------- TLS


def test_tls_round_trips(tmp_path: Path) -> None:
    import ssl

    from tests.support.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    client_context = ssl.create_default_context(cafile=str(pki.ca))
    before = our_threads()
    server = make_server(ssl_context=server_context)
    server.start(block=False)
    port = server.address[1]  # type: ignore[index]
    try:
        for full_duplex in (False, True):
            with TcpClient("tcp://localhost:%d" % port, timeout=5, full_duplex=full_duplex,
                           ssl_context=client_context) as client:
                assert client.hello("tls😀") == "Hello tls😀"
                assert client.hello("again") == "Hello again"
        # one TLS connection read by its reader thread while 16 threads write on it
        with TcpClient("tcp://localhost:%d" % port, timeout=10, full_duplex=True,
                       ssl_context=client_context) as client:
            def work(n: int) -> None:
                for i in range(30):
                    assert client.echo("%d-%d" % (n, i)) == "%d-%d" % (n, i)

            errors = run_in_threads(work, 16)
            assert not errors, errors[:3]
        assert server.url.startswith("tcp4s://")  # a TLS server advertises a TLS scheme
        with TcpClient("tcp://localhost:%d" % port, timeout=5) as plain:  # no TLS: fails
            with pytest.raises(TransportError):
                plain.hello("x")
        with TcpClient("tcp://localhost:%d" % port, timeout=5,  # an unknown CA: never sent
                       ssl_context=ssl.create_default_context()) as untrusted:
            with pytest.raises(ConnectError):
                untrusted.hello("x")
    finally:
        server.stop()
    assert not our_threads() - before


# --------------------------------------------------------------------------- hostile peers


def test_oversized_declared_length_closes_that_connection_only(
        server: TcpServer, caplog: pytest.LogCaptureFixture) -> None:
    with TcpClient(server.url, timeout=5, full_duplex=True) as good:
        assert good.hello("a") == "Hello a"
        with caplog.at_level(logging.ERROR, logger="hprose_cluster.transport.tcp"):
            for header in (b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff\x00\x00\x00\x01"):
                with socket.create_connection(server.address) as raw:  # type: ignore[arg-type]
                    raw.settimeout(5)
                    raw.sendall(header + b"garbage")
                    assert raw.recv(100) == b""  # closed without an answer
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2 and "2147483647" in errors[0].getMessage()
        assert good.hello("b") == "Hello b"


def test_declared_2_gib_is_never_allocated() -> None:
    server = make_server(max_frame=framing.LENGTH_MASK)  # the limit lets 2 GiB through
    server.start(block=False)
    tracemalloc.start()
    try:
        with socket.create_connection(server.address) as raw:  # type: ignore[arg-type]
            raw.settimeout(5)
            raw.sendall(b"\x7f\xff\xff\xf0" + b"x" * 100_000)
            raw.shutdown(socket.SHUT_WR)
            assert raw.recv(100) == b""  # the server read what came, then saw EOF
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.stop()
    assert peak < 16 * 1024 * 1024, peak


frames = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n, body: n.to_bytes(4, "big") + body,
              st.integers(0, 2**32 - 1), st.binary(max_size=64)),
    st.builds(lambda body, rid, full: framing.encode(body, rid if full else None),
              st.binary(max_size=64), st.integers(0, 2**32 - 1), st.booleans()),
)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[TcpServer]:
    server = make_server(max_frame=4096)
    server.start(block=False)
    yield server
    server.stop(drain_timeout=2)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frames, min_size=1, max_size=4))
def test_random_frames_do_not_hurt_other_clients(shared_server: TcpServer,
                                                 chunks: list[bytes]) -> None:
    with socket.create_connection(shared_server.address) as raw:  # type: ignore[arg-type]
        raw.settimeout(5)
        try:
            raw.sendall(b"".join(chunks))
            raw.shutdown(socket.SHUT_WR)
        except OSError:  # the server may have closed on us already: fine
            pass
        received = b""
        while True:  # every reply the server chose to send, then its close
            try:
                data = raw.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    # whatever came back is well-formed frames
    while received:
        word = int.from_bytes(received[:4], "big")
        header = 8 if word & framing.FULL_DUPLEX_BIT else 4
        length = word & framing.LENGTH_MASK
        body = received[header:header + length]
        assert len(body) == length and body[:1] in (b"R", b"E", b"F") and body[-1:] == b"z"
        received = received[header + length:]
    with TcpClient(shared_server.url, timeout=5) as good:
        assert good.hello("still") == "Hello still"


# --------------------------------------------------------------------------- a peer that stops reading


def test_a_client_that_reads_no_reply_is_dropped_and_others_are_served(
        caplog: pytest.LogCaptureFixture) -> None:
    """A client pipelines full-duplex requests for 1 MB replies and never reads them: the
    workers answering it block in send.  After ``send_timeout`` the server closes that
    connection, and a well-behaved client's call goes through."""
    server = make_server(workers=4, send_timeout=0.5)
    server.start(block=False)
    try:
        body = b'Cs4"blob"a1{i1000000;}z'
        with socket.create_connection(server.address) as hostile:  # type: ignore[arg-type]
            for request_id in range(1, 41):
                hostile.sendall(framing.encode_full(body, request_id))
            # every worker is now stuck writing a reply nobody reads
            assert wait_until(lambda: server.in_flight == 4, 5), server.in_flight
            started = time.monotonic()
            with TcpClient(server.url, timeout=5, full_duplex=True) as good:
                assert good.hello("ok") == "Hello ok"
            assert time.monotonic() - started < 0.5 + 2.5
            # (the good call may not even need a worker: one call at a time on a connection
            # runs on that connection's thread; the stuck connection is dropped all the same)
            assert wait_until(lambda: any("read no reply" in r.getMessage()
                                          for r in caplog.records), 5), caplog.text
    finally:
        server.stop(drain_timeout=2)


def test_bad_send_timeout_is_refused() -> None:
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="send_timeout"):
            TcpServer("127.0.0.1", 0, send_timeout=bad)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_full_duplex_send_to_a_peer_that_never_reads_times_out(tmp_path: Path, tls: bool) -> None:
    """A server that accepts (and does the TLS handshake) and then reads nothing: a large
    request fills the socket buffers.  The caller must get CallTimeout within its timeout (not
    hang in sendall), and a second caller queued behind it too (on the abandoned connection, or
    on a new one).  A request cut short never ran: both are marked as not sent."""
    import ssl

    from tests.support.certs import make_pki

    client_context = None
    held: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        if tls:
            pki = make_pki(tmp_path / "pki")
            server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_context.load_cert_chain(str(pki.server.cert), str(pki.server.key))
            client_context = ssl.create_default_context(cafile=str(pki.ca))

            def handshake_then_hold() -> None:
                listener.settimeout(5)
                try:
                    while True:
                        conn, _ = listener.accept()
                        held.append(server_context.wrap_socket(conn, server_side=True))
                except OSError:
                    return  # the listener was closed, or nobody came for 5 s

            threading.Thread(target=handshake_then_hold, daemon=True).start()
        url = "tcp4://localhost:%d" % listener.getsockname()[1]
        with TcpClient(url, timeout=1.0, full_duplex=True, ssl_context=client_context) as client:
            big = "x" * (16 * 1024 * 1024)
            errors: list[BaseException] = []

            def call() -> None:
                try:
                    client.hello(big)
                except BaseException as error:  # collected and asserted below
                    errors.append(error)

            started = time.monotonic()
            callers = [threading.Thread(target=call) for _ in range(2)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(10)
            assert not any(caller.is_alive() for caller in callers), "a caller hung in send"
            assert time.monotonic() - started < 1.0 + 2.0
            assert len(errors) == 2 and all(isinstance(e, CallTimeout) for e in errors), errors
            assert not any(e.sent for e in errors), errors
    for conn in held:
        conn.close()


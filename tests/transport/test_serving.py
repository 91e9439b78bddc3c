"""The serving lifecycle shared by every server transport: states, signals during
registration, drain.  Real processes and sockets, for both HTTP and TCP servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hprose_cluster.transport.connection import State
from hprose_cluster.transport.http import HttpClient, HttpServer
from hprose_cluster.transport.tcp import TcpClient, TcpServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys, time
    from hprose_cluster.transport.http import HttpServer
    from hprose_cluster.transport.tcp import TcpServer

    class Server({cls}):
        def _on_listening(self):
            print("REGISTERING", flush=True)
            time.sleep(1.0)  # a slow registration: SIGTERM arrives in the middle of it
            print("REGISTERED", flush=True)

        def _before_stop(self):
            print("DEREGISTERED", flush=True)

    server = Server("127.0.0.1", 0)
    server.start()
    print("RETURNED", server.serving_state.value, flush=True)
""")


@pytest.mark.parametrize("cls", ["HttpServer", "TcpServer"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_during_registration_still_ends_in_a_graceful_stop(cls: str,
                                                                    signum: int) -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT.format(cls=cls)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "REGISTERING"
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert out.split() == ["REGISTERED", "DEREGISTERED", "RETURNED", "stopped"], (out, err)
    assert process.returncode == 0, err


@pytest.mark.parametrize("cls", [HttpServer, TcpServer], ids=["http", "tcp"])
def test_states_from_new_to_stopped_and_no_second_life(cls: type) -> None:
    server = cls("127.0.0.1", 0)
    server.addFunction(lambda: "hi", "hi")
    assert server.serving_state is State.NEW and server.address is None
    server.listen()
    assert server.serving_state is State.LISTENING and server.address[1] > 0
    server.start(block=False)
    assert server.serving_state is State.SERVING
    client_cls = HttpClient if cls is HttpServer else TcpClient
    with client_cls(server.url, timeout=5) as client:
        assert client.hi() == "hi"
    server.stop()
    assert server.serving_state is State.STOPPED
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="stopped"):
        server.start(block=False)


@pytest.mark.parametrize("cls", [HttpServer, TcpServer], ids=["http", "tcp"])
def test_stop_waits_for_the_request_in_flight_and_a_second_stop_waits_too(cls: type) -> None:
    release = threading.Event()
    server = cls("127.0.0.1", 0)
    server.addFunction(lambda: release.wait(5) and "done", "work")
    server.start(block=False)
    client_cls = HttpClient if cls is HttpServer else TcpClient
    results: list[object] = []
    with client_cls(server.url, timeout=10) as client:
        caller = threading.Thread(target=lambda: results.append(client.work()))
        caller.start()
        deadline = time.monotonic() + 5
        while server.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.in_flight == 1
        stoppers = [threading.Thread(target=server.stop) for _ in range(2)]
        for stopper in stoppers:
            stopper.start()
        time.sleep(0.3)
        assert all(stopper.is_alive() for stopper in stoppers)  # both wait for the drain
        assert server.serving_state is State.STOPPING
        release.set()
        caller.join(5)
        for stopper in stoppers:
            stopper.join(5)
    assert results == ["done"]
    assert server.serving_state is State.STOPPED and server.in_flight == 0


@pytest.mark.parametrize("cls", [HttpServer, TcpServer], ids=["http", "tcp"])
def test_stop_returns_after_the_accept_thread_has_ended(cls: type) -> None:
    """The accept loop says it is over a moment before its thread returns; stop() waits for
    the thread too.  A tiny switch interval makes that moment likely: with stop() waiting for
    the loop only, both servers left a thread here within the 200 rounds."""
    kind = "http" if cls is HttpServer else "tcp"
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    left = []
    try:
        for _ in range(200):
            server = cls("127.0.0.1", 0)
            server.start(block=False)
            server.stop(drain_timeout=0)
            left += [t.name for t in threading.enumerate()
                     if t.name.startswith("hprose-cluster-%s-serve-" % kind)]
    finally:
        sys.setswitchinterval(old)
    assert left == []

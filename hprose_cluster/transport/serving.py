"""The one serving lifecycle under every server transport.

``Serving`` owns what every server does the same way: open the listening socket, accept in a
loop (``accept.py``), give each connection its own daemon thread (and the TLS handshake, when
there is an ``ssl_context``), an optional pool of worker threads, SIGTERM/SIGINT handling
(``signals.py``), the count of requests in flight (``inflight.py``), and a graceful stop
that drains them.  Its state is one ``State``.

A transport plugs in a ``ProtocolHandler`` (``connection.py``), which only speaks its
protocol.  Servers use it through ``ServerBase`` (``server_base.py``), which gives them the
public surface ``ClusterServer`` relies on.

Stopping (``stop(drain_timeout)``) always goes the same way.  ``DRAINING``: ``before_stop()``
runs (the cluster mixin deregisters there, then sleeps its drain delay) while the server goes
on accepting and serving exactly as before -- clients that still list it open connections and
reuse kept-alive ones, and those calls must succeed.  ``STOPPING``: stop accepting, close the
listener, ``quiesce`` every connection (idle ones close now), wait up to ``drain_timeout`` for
the requests in flight, ``abandon`` and shut down what is left, join the threads.  Whoever
calls ``stop()`` (a signal in a blocking ``start()`` included), accepting goes on during
``before_stop()``: when no accept loop is running then, one runs on a thread for the drain.
Signals are installed *before* ``on_listening()`` runs, so a SIGTERM during registration still
ends in that graceful stop; the handler only sets a flag and wakes the accept loop (no locks,
no logging in a signal handler).
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable

from .accept import Acceptor
from .inflight import InFlight
from .connection import (Connection, ConnectionHandler, ProtocolHandler, State, _local,
                         _peer_name, current_connection)
from .listen import open_listener
from .signals import stop_signals
from .workers import WorkerPool

__all__ = ["State", "Connection", "ProtocolHandler", "ConnectionHandler", "Serving",
           "current_connection"]


_ACCEPTING = (State.SERVING, State.DRAINING)


def _noop() -> None:
    pass


class Serving(InFlight):
    """Listen, accept, serve and drain for one server; see the module docstring.

    ``kind`` names threads (``hprose-cluster-<kind>-conn-N``) and log lines; ``log`` is the
    transport's logger.  ``workers`` > 0 starts a ``WorkerPool`` of that many threads on demand
    (``submit``).  With ``ssl_context`` each connection's thread does the TLS handshake (bounded
    by ``handshake_timeout``) before the handler sees the socket.  ``on_listening`` and
    ``before_stop`` are the server's hooks.  ``open_socket`` replaces ``open_listener`` (a unix
    socket transport passes its own).
    """

    def __init__(self, handler: ProtocolHandler, *, host: str, port: int,
                 family: int = socket.AF_UNSPEC, kind: str, log: logging.Logger,
                 ssl_context: ssl.SSLContext | None = None, handshake_timeout: float = 10.0,
                 workers: int = 0, on_listening: Callable[[], None] = _noop,
                 before_stop: Callable[[], None] = _noop,
                 open_socket: Callable[[], socket.socket] | None = None):
        self.handler = handler
        if isinstance(handler, ConnectionHandler):
            handler.serving = self
        self.host = host
        self.port = port
        self.family = family
        self.kind = kind
        self.log = log
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.workers = workers
        self._on_listening = on_listening
        self._before_stop = before_stop
        self._open_socket = open_socket or (lambda: open_listener(self.host, self.port,
                                                                  self.family))
        self.address: Any = None  # (host, port) of the bound socket once listening
        super().__init__()
        self._acceptor: Acceptor | None = None  # the listener, from listen() to stop()
        self._pool: WorkerPool | None = None
        self._start_failed = False  # on_listening raised: nothing to serve while stopping
        self._stopped = threading.Event()
        self._signalled: int | None = None
        self._sequence = itertools.count(1)
        self.name = "%s:%s" % (host, port)  # the URL once known (set by the server)

    def submit(self, conn: Connection, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread, as part of serving ``conn``."""
        assert self._pool is not None, "Serving was created with workers=0"
        self._pool.submit(self._run_task, conn, fn, args)

    @staticmethod
    def _run_task(conn: Connection, fn: Callable[..., None], args: tuple) -> None:
        _local.conn = conn
        try:
            fn(*args)
        finally:
            _local.conn = None

    # --- lifecycle ------------------------------------------------------------------------

    def listen(self) -> None:
        """Open the listening socket (once); ``address`` is then the bound address."""
        with self._lock:
            if self._acceptor is not None:
                return
            if self._state is not State.NEW:
                raise RuntimeError("%s was stopped; create a new one" % self.name)
            sock = self._open_socket()
            name = sock.getsockname()
            self.address = tuple(name[:2]) if isinstance(name, tuple) else name
            self._acceptor = Acceptor(sock, name=lambda: self.name, log=self.log,
                                      keep_going=self._keep_accepting,
                                      accepting=lambda: self._state in _ACCEPTING,
                                      on_accept=self._accepted)
            if self.workers > 0:
                port = self.address[1] if isinstance(self.address, tuple) else 0
                self._pool = WorkerPool(self.workers, "hprose-cluster-%s-worker-%s"
                                        % (self.kind, port), self.log)
            self._state = State.LISTENING

    def start(self, block: bool = True, stop: Callable[[], None] | None = None) -> None:
        """Listen, run ``on_listening``, then accept until stopped.

        ``block=True`` serves in the calling thread; in the main thread SIGINT and SIGTERM are
        handled (installed before ``on_listening``) and end in ``stop`` (the server's own stop,
        so its hooks run); ``start`` returns once stopped.  ``block=False`` accepts on a
        daemon thread.  If ``on_listening`` fails the server is stopped and the error raised.
        """
        self.listen()
        with self._lock:
            if self._state is not State.LISTENING:
                raise RuntimeError("%s is already serving or stopped" % self.name)
            self._state = State.SERVING
            acceptor = self._acceptor
        # claimed before on_listening: a stop() meanwhile knows a loop is coming
        claimed = acceptor is not None and acceptor.claim()
        stop = stop or self.stop
        if not block:
            self._hooked_listening(stop, claimed)
            if claimed:
                assert acceptor is not None
                acceptor.start_thread("hprose-cluster-%s-serve-%s" % (self.kind, self.name))
            return
        with stop_signals(self._on_signal):  # in the main thread; before on_listening
            self._hooked_listening(stop, claimed)
            try:
                if claimed:
                    assert acceptor is not None
                    self._accept_loop(acceptor)
            except KeyboardInterrupt:  # SIGINT arrived before our handler was installed
                self.log.info("interrupted; stopping %s", self.name)
            finally:
                stop()

    def _hooked_listening(self, stop: Callable[[], None], claimed: bool) -> None:
        try:
            self._on_listening()
        except BaseException:
            self._start_failed = True  # nothing to serve while stopping
            if claimed and self._acceptor is not None:
                self._acceptor.unclaim()  # no loop will run
            stop()
            raise

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Only set a flag and wake the loop: stop() takes locks and joins threads, which a
        signal handler interrupting arbitrary code must not do (nor log)."""
        self._signalled = signum
        self._wake()

    def _wake(self) -> None:
        acceptor = self._acceptor
        if acceptor is not None:
            acceptor.wake()

    def _accept_loop(self, acceptor: Acceptor) -> None:
        """The blocking start()'s loop, in the calling thread."""
        acceptor.run()
        if self._signalled is not None and self._state is State.SERVING:
            self.log.info("signal %d received; stopping %s", self._signalled, self.name)

    def _keep_accepting(self) -> bool:
        """Accept while serving, and while draining whatever happens (a signal then is one
        more request to stop, which is already under way).  No lock: the acceptor asks
        under its own."""
        state = self._state
        return state is State.DRAINING or (state is State.SERVING and self._signalled is None)

    def _accept_while_draining(self) -> None:
        """``stop()`` began and no accept loop runs (a blocking ``start()`` left its loop for
        a signal and stops on that thread): run one on a thread until the drain is over."""
        acceptor = self._acceptor
        if acceptor is not None and not self._start_failed and acceptor.claim():
            acceptor.start_thread("hprose-cluster-%s-drain-%s" % (self.kind, self.name))

    def _accepted(self, sock: socket.socket, peer: Any) -> None:
        """A connection came: its own thread serves it (unless the server stopped accepting
        meanwhile)."""
        conn = Connection(sock, peer)
        with self._lock:
            if self._state not in _ACCEPTING:
                sock.close()
                return
            conn.thread = threading.Thread(
                target=self._run_connection, args=(conn,), daemon=True,
                name="hprose-cluster-%s-conn-%d" % (self.kind, next(self._sequence)))
            self._connections.add(conn)
        conn.thread.start()

    def _run_connection(self, conn: Connection) -> None:
        """The body of a connection thread; no exception leaves it."""
        _local.conn = conn
        peer = _peer_name(conn.peer)
        try:
            if self.ssl_context is not None and not self._handshake(conn, peer):
                return
            self.handler.serve_connection(conn)
        except OSError as error:
            self.log.debug("connection from %s ended: %r", peer, error)
        except Exception:
            self.log.exception("connection from %s failed", peer)
        finally:
            _local.conn = None
            try:
                conn.sock.close()
            except OSError:
                pass
            with self._lock:
                self._connections.discard(conn)
                self._changed.notify_all()

    def _handshake(self, conn: Connection, peer: str) -> bool:
        assert self.ssl_context is not None
        conn.sock.settimeout(self.handshake_timeout)
        tls = self.ssl_context.wrap_socket(conn.sock, server_side=True,
                                           do_handshake_on_connect=False)
        with self._lock:  # stop() shuts down whichever socket it finds here
            conn.sock = tls
            if conn.shut:
                return False
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as error:
            if not conn.shut:
                self.log.info("TLS handshake with %s failed: %s", peer, error)
            return False
        return True

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop gracefully (see the module docstring).  Idempotent: a second call waits for
        the first to finish, unless it comes from a request of this server (which would wait
        for itself)."""
        with self._lock:
            state = self._state
            if state is State.NEW:
                self._state = State.STOPPED
                self._stopped.set()
                return
            first = state is State.LISTENING or state is State.SERVING
            if first:
                self._state = State.DRAINING
        if not first:
            if current_connection() is None:
                self._stopped.wait()
            return
        try:
            self._stop(drain_timeout, served=state is State.SERVING)
        finally:
            with self._lock:
                self._state = State.STOPPED
            self._stopped.set()

    def _stop(self, drain_timeout: float, served: bool) -> None:
        if served:
            self._accept_while_draining()
        try:
            self._before_stop()  # deregister, drain delay: still accepting and serving
        except Exception:
            self.log.exception("%s: before-stop hook failed; stopping anyway", self.name)
        with self._lock:
            self._state = State.STOPPING
        deadline = time.monotonic() + max(drain_timeout, 0.0)
        with self._lock:
            acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.wake()
            acceptor.wait_idle(max(deadline - time.monotonic(), 0.0) + 5.0)
            acceptor.close()
        # Only now end the idle connections: a client that retries on a new connection then
        # gets a clean "connection refused" (ConnectError, sent=False), not a connection
        # accepted into a backlog that is about to be reset.
        for conn in self.connections():
            self.handler.quiesce(conn)
        mine = current_connection()
        own = 1 if mine is not None and mine.in_flight else 0  # stop() called by a function
        with self._lock:
            while self._in_flight + self._here_count() > own:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.log.warning("%s: %d request(s) still running after %.3gs; closing "
                                     "their connections", self.name,
                                     self._in_flight + self._here_count() - own, drain_timeout)
                    break
                self._changed.wait(remaining)
            connections = list(self._connections)
        for conn in connections:
            if conn is mine:  # let the function that called stop() answer
                continue
            if conn.in_flight:
                self.handler.abandon(conn)
            self.shut(conn)
        current = threading.current_thread()
        threads = [c.thread for c in connections if c.thread is not None]
        join_by = max(deadline, time.monotonic()) + 2.0
        for thread in threads:
            if thread is not current:
                thread.join(max(join_by - time.monotonic(), 0.01))
        if self._pool is not None:
            self._pool.shutdown(max(join_by - time.monotonic(), 0.01))
        left = [t.name for t in threads if t.is_alive() and t is not current]
        if left:
            self.log.warning("%s: threads still running after stop(): %s", self.name, left)
        self.log.info("stopped %s", self.name)

"""``hprose-cluster etcd``: an etcd server for development, in the foreground until stopped.

Its ports are the user's choice and are kept: a port asked for (or the default 2379/2380)
that is taken ends the command with one line naming it, never a start on another port.  The
check comes before etcd starts, because a port held by another etcd would answer our health
check and make a failed start look like a success.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import socket
from pathlib import Path
from typing import Any

from ...errors import EtcdError
from ...etcd import ENV_ENDPOINTS
from ..command import Command
from ..errors import Failure, UsageError
from ..output import note, out
from ..signals import StopSignals

_IN_USE = re.compile(r"listen tcp (\S+?):(\d+): bind: address already in use")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="keep the data here (default: a temporary folder removed on exit)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--client-port", type=int, default=2379, metavar="PORT",
                        help="client port (default: 2379; 0 picks a free one)")
    parser.add_argument("--peer-port", type=int, default=2380, metavar="PORT",
                        help="peer port (default: 2380; 0 picks a free one)")


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound the way etcd binds (SO_REUSEADDR, as Go sets it on Linux)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _taken(host: str, port: int, which: str) -> Failure:
    return Failure("port %d on %s is taken (wanted as etcd's %s port): stop what listens there, "
                   "or choose another with --%s-port (0 picks a free one)"
                   % (port, host, which, which))


def _choose_ports(host: str, client_port: int, peer_port: int) -> tuple[int, int]:
    """The two ports etcd gets: the ones asked for, checked free now, or (for 0) free ones."""
    for name, port in (("client", client_port), ("peer", peer_port)):
        if not 0 <= port <= 65535:
            raise UsageError("--%s-port must be in 0..65535, got %d" % (name, port))
    if client_port and client_port == peer_port:
        raise UsageError("--client-port and --peer-port are both %d" % client_port)
    held = []
    try:
        chosen = []
        for which, port in (("client", client_port), ("peer", peer_port)):
            try:
                sock = _bind(host, port)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise _taken(host, port, which) from error
                raise Failure("cannot listen on %s port %d (etcd's %s port): %s"
                              % (host, port, which, error.strerror or error)) from error
            held.append(sock)  # held until both are chosen, so 0 and 0 differ
            chosen.append(sock.getsockname()[1])
        return chosen[0], chosen[1]
    finally:
        for sock in held:
            sock.close()


def _last_error(tail: str) -> str | None:
    """etcd's last error in its JSON log, as ``msg: error``."""
    for line in reversed(tail.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("fatal", "panic", "error"):
            if entry.get("error"):
                return "%s: %s" % (entry.get("msg", "error"), entry["error"])
            return str(entry.get("msg"))
    return None


def _start_failure(server: Any, error: EtcdError) -> Failure:
    """One line for a failed start: the taken port if that was it, else etcd's own last
    error from its log (the temporary folder holding the log goes with the command)."""
    tail = server.log_tail(60)
    taken = _IN_USE.search(tail)
    if taken is not None:
        port = int(taken.group(2))
        which = "client" if port == server.client_port else "peer"
        return _taken(taken.group(1), port, which)
    return Failure("etcd did not start on %s: %s"
                   % (server.endpoint, _last_error(tail) or str(error).splitlines()[0]))


def run(args: argparse.Namespace) -> int:
    from ...embedded import EmbeddedEtcd

    client_port, peer_port = _choose_ports(args.host, args.client_port, args.peer_port)
    log_path = None
    if args.data_dir is not None:
        data_dir = Path(args.data_dir).absolute()
        log_path = data_dir.with_name(data_dir.name + ".log")
    with StopSignals() as stop:
        # The folder is made here, so from here on only close() may end the command.
        # Data that goes on exit needs no fsync: without it a busy disk cannot stall the
        # development etcd for seconds (kept data keeps etcd's default).
        extra = ["--unsafe-no-fsync"] if args.data_dir is None else []
        server = EmbeddedEtcd(args.data_dir, host=args.host, client_port=client_port,
                              peer_port=peer_port, name="hprose-cluster", fast=False,
                              log_path=log_path, extra_args=extra)
        try:
            try:
                server.start()
            except EtcdError as error:
                raise _start_failure(server, error) from error
            if stop.requested:
                return 0
            where = "a temporary folder, removed on exit" if args.data_dir is None \
                else server.data_dir
            out("etcd is up at %s (data in %s, log in %s)" % (server.endpoint, where,
                                                              server.log_path))
            out("export %s=%s" % (ENV_ENDPOINTS, server.endpoint))
            note("Ctrl-C stops it")

            def poll() -> None:
                if not server.running:
                    code = server._proc.returncode if server._proc else "?"
                    raise Failure("etcd at %s exited (code %s): %s"
                                  % (server.endpoint, code,
                                     _last_error(server.log_tail(60)) or "no error in its log"))

            stop.wait_until_stopped(poll)
        finally:
            server.close()
        note("etcd at %s stopped" % server.endpoint)
    return 0


COMMAND = Command(
    "etcd", "Run an etcd server for development in the foreground, until Ctrl-C.",
    "  $ hprose-cluster etcd\n"
    "  etcd is up at 127.0.0.1:2379 (data in a temporary folder, removed on exit, log in ...)\n"
    "  export HPROSE_CLUSTER_ETCD=127.0.0.1:2379\n"
    "  $ hprose-cluster etcd --data-dir ./etcd-data --client-port 0 --peer-port 0\n",
    add_arguments, run)

"""``hprose-cluster etcd``: an etcd server for development, in the foreground until stopped."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...etcd import ENV_ENDPOINTS
from ..command import Command
from ..errors import Failure
from ..output import note, out
from ..signals import StopSignals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="keep the data here (default: a temporary folder removed on exit)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--client-port", type=int, default=2379, metavar="PORT",
                        help="client port (default: 2379; 0 picks a free one)")
    parser.add_argument("--peer-port", type=int, default=2380, metavar="PORT",
                        help="peer port (default: 2380; 0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    from ...embedded import EmbeddedEtcd

    log_path = None
    if args.data_dir is not None:
        data_dir = Path(args.data_dir).absolute()
        log_path = data_dir.with_name(data_dir.name + ".log")
    with StopSignals() as stop:
        # The folder is made here, so from here on only close() may end the command.
        server = EmbeddedEtcd(args.data_dir, host=args.host, client_port=args.client_port,
                              peer_port=args.peer_port, name="hprose-cluster", fast=False,
                              log_path=log_path)
        try:
            server.start()
            if stop.requested:
                return 0
            out("etcd is up at %s (data in %s, log in %s)"
                % (server.endpoint, server.data_dir, server.log_path))
            out("export %s=%s" % (ENV_ENDPOINTS, server.endpoint))
            note("Ctrl-C stops it")

            def poll() -> None:
                if not server.running:
                    raise Failure("etcd at %s exited (code %s); log tail:\n%s"
                                  % (server.endpoint,
                                     server._proc.returncode if server._proc else "?",
                                     server.log_tail()))

            stop.wait_until_stopped(poll)
        finally:
            server.close()
        note("etcd at %s stopped" % server.endpoint)
    return 0


COMMAND = Command(
    "etcd", "Run an etcd server for development in the foreground, until Ctrl-C.",
    "  $ hprose-cluster etcd --data-dir ./etcd-data\n"
    "  etcd is up at 127.0.0.1:2379 (data in ...)\n"
    "  export HPROSE_CLUSTER_ETCD=127.0.0.1:2379\n",
    add_arguments, run)

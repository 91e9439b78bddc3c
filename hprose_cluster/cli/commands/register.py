"""``hprose-cluster register DOMAIN URL``: keep a record for a server that does not register
itself (a Go or PHP hprose server) until stopped, then remove it."""

from __future__ import annotations

import argparse
import json
import socket
from urllib.parse import urlsplit

from ...errors import ConfigError, EtcdError
from ...etcd import EtcdConnection
from ...record import ServerInfo, unix_socket_path
from .. import options
from ..command import Command
from ..errors import UsageError
from ..output import note, out, warn
from ..registry import read
from ..signals import StopSignals


def check_reachable(url: str, timeout: float) -> None:
    """Warn (only) when nothing answers at the URL's address: the record would send clients
    to a dead server until someone starts it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(unix_socket_path(url))
        else:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
    except OSError as error:
        warn("nothing answers at %s yet (%s); registering it anyway" % (url, error))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", metavar="DOMAIN")
    parser.add_argument("url", metavar="URL",
                        help="http(s)://, tcp(4|6)://, ws(s):// URL or unix:/path")
    parser.add_argument("--uuid", help="the record's UUID (default: a new random one)")
    parser.add_argument("--cpu", type=int,
                        help="CPU count clients weigh by (default: this machine's)")
    parser.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default: 10)")
    parser.add_argument("--heartbeat", type=float, default=3.0,
                        help="seconds between lease refreshes (default: 3)")


def run(args: argparse.Namespace) -> int:
    from ...record import new_uuid, usable_cpus
    from ...registrar import Registrar

    config = options.config(args)
    with StopSignals() as stop, EtcdConnection(config) as connection:
        try:
            info = ServerInfo(options.domain(args.domain), args.url, args.uuid or new_uuid(),
                              usable_cpus() if args.cpu is None else args.cpu)
            registrar = Registrar(info, connection=connection, ttl=args.ttl,
                                  heartbeat=args.heartbeat)
        except ConfigError as error:
            raise UsageError(str(error)) from error
        check_reachable(info.url, min(config.timeout, 2.0))
        registrar.start()
        try:
            if args.json:
                out(json.dumps({"key": registrar.key, "uuid": info.uuid, "url": info.url,
                                "cpu": info.cpu, "lease": registrar.lease_id, "ttl": args.ttl}))
            else:
                out(registrar.key)
            note("keeping %s registered (ttl %d s, heartbeat %g s); Ctrl-C removes it"
                 % (info.url, args.ttl, args.heartbeat))
            stop.wait_until_stopped()
        finally:
            registrar.close()
        return _report_removal(connection, registrar.key, args.ttl)


def _report_removal(connection: EtcdConnection, key: str, ttl: int) -> int:
    """Say "removed" only after seeing the record gone: the revoke may have failed (etcd
    away), and then the record stays until its lease expires."""
    try:
        response = read(connection, lambda: connection.get(key))
    except EtcdError as error:
        note("could not remove %s (%s); it expires within %d s" % (key, error, ttl))
        return 1
    if response.kvs:
        note("could not remove %s (still in etcd); it expires within %d s" % (key, ttl))
        return 1
    note("removed %s" % key)
    return 0


COMMAND = Command(
    "register", "Keep a record for a server that does not register itself (a Go or PHP hprose "
                "server) until Ctrl-C, then remove it.",
    "  $ hprose-cluster register tcp.hello.server tcp4://10.0.0.5:4321 --cpu 8\n"
    "  hprose-service/tcp.hello.server/4f6c...\n",
    add_arguments, run)

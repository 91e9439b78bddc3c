"""The ``hprose-cluster`` command: look at, follow, call and feed a registry from a shell.

Subcommands: ``ls``, ``get``, ``watch``, ``call``, ``register``, ``etcd``, ``demo``.  Output is
an aligned table for people, or JSON with ``--json`` for scripts.  Exit codes: 0 success,
1 a lookup or call failed (no such domain or UUID, etcd unreachable, a remote error),
2 a usage error (bad option, bad domain, bad URL).  Errors are one line on stderr,
``hprose-cluster: error: ...``; ``--debug`` adds the traceback and the library's debug log.

The commands that run until stopped (``watch``, ``register``, ``etcd``) stop cleanly on
Ctrl-C or SIGTERM and exit 0: a ``register`` revokes its lease so the record goes at once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from . import top
from .discovery import Discovery
from .errors import ConfigError, HproseClusterError
from .etcd import (ENV_CA, ENV_CERT, ENV_ENDPOINTS, ENV_KEY, ENV_PASSWORD, ENV_PREFIX, ENV_USER,
                   EtcdConfig, EtcdConnection, KeyValue)
from .record import RecordError, ServerInfo, unix_socket_path, validate_domain, validate_uuid

PROG = "hprose-cluster"
DEFAULT_ETCD_TIMEOUT = 5.0
DEFAULT_CALL_TIMEOUT = 10.0

log = logging.getLogger("hprose_cluster.cli")


class Failure(Exception):
    """A lookup or call that failed: one line on stderr, exit 1."""


class UsageError(Exception):
    """Bad input found after parsing (a domain, a URL): one line on stderr, exit 2."""


# --- output helpers ---------------------------------------------------------------------------

def _out(text: str = "") -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print("%s: warning: %s" % (PROG, text), file=sys.stderr, flush=True)


def _note(text: str) -> None:
    print("%s: %s" % (PROG, text), file=sys.stderr, flush=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    cells = [list(headers)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """What ``json.dumps`` cannot encode, as something close: hprose returns bytes, dates,
    and objects of classes it made up."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def _dumps(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_jsonable)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _wait_for_signal(stop: threading.Event, poll: Callable[[], None] | None = None,
                     interval: float = 0.5) -> None:
    """Block until Ctrl-C or SIGTERM (or ``stop`` is set elsewhere); ``poll`` runs meanwhile
    and may raise to end the wait with an error."""
    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(interval):
            if poll is not None:
                poll()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- configuration ------------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> EtcdConfig:
    return EtcdConfig.from_env(endpoints=args.etcd, prefix=args.prefix, timeout=args.timeout,
                               ca_file=args.ca, cert_file=args.cert, key_file=args.key,
                               user=args.user, password=args.password)


def _domain(text: str) -> str:
    try:
        return validate_domain(text)
    except ConfigError as error:
        raise UsageError(str(error)) from error


def _split_key(prefix: str, key: str) -> tuple[str, str]:
    """``<prefix>/<domain>/<uuid>`` -> (domain, uuid); a key of another shape gives what it has."""
    rest = key[len(prefix) + 1:]
    domain, _, uuid = rest.partition("/")
    return domain, uuid


def _entry(connection: EtcdConnection, kv: KeyValue) -> dict[str, Any]:
    """One stored record with its etcd metadata, as ``get --json`` and ``ls DOMAIN --json``
    print it.  ``ttl`` is the seconds left on the lease (None: no lease; -1: lease gone)."""
    raw = kv.value.decode("utf-8", "replace")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    lease = kv.lease
    ttl = connection.lease_ttl(lease) if lease else None
    return {"key": kv.key, "lease": lease, "ttl": ttl,
            "mod_revision": kv.mod_revision, "value": value}


# --- ls -----------------------------------------------------------------------------------------

def cmd_ls(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.domain is not None:
        return _ls_domain(args, config, _domain(args.domain))
    with EtcdConnection(config) as connection:
        response = connection.get_prefix(config.prefix + "/")
    counts: dict[str, list[int]] = {}
    for kv in response.kvs:
        key = kv.key
        domain, _ = _split_key(config.prefix, key)
        servers_skipped = counts.setdefault(domain, [0, 0])
        try:
            ServerInfo.from_json(kv.value, key)
        except RecordError as error:
            _warn("skipping %s" % error)
            servers_skipped[1] += 1
        else:
            servers_skipped[0] += 1
    rows = [{"domain": d, "servers": c[0], "skipped": c[1]} for d, c in sorted(counts.items())]
    if args.json:
        _out(_dumps(rows))
        return 0
    if not rows:
        _note("no domain under %s/ (etcd %s)" % (config.prefix, config.describe()))
        return 0
    if any(row["skipped"] for row in rows):
        _out(_table(("DOMAIN", "SERVERS", "SKIPPED"),
                    [(r["domain"], r["servers"], r["skipped"]) for r in rows]))
    else:
        _out(_table(("DOMAIN", "SERVERS"), [(r["domain"], r["servers"]) for r in rows]))
    return 0


def _ls_domain(args: argparse.Namespace, config: EtcdConfig, domain: str) -> int:
    prefix = "%s/%s/" % (config.prefix, domain)
    entries = []
    with EtcdConnection(config) as connection:
        response = connection.get_prefix(prefix)
        for kv in response.kvs:
            key = kv.key
            try:
                info = ServerInfo.from_json(kv.value, key)
            except RecordError as error:
                _warn("skipping %s" % error)
                continue
            entries.append((info, _entry(connection, kv)))
    if not entries:
        raise Failure("no server in domain %r (etcd %s)" % (domain, config.describe()))
    if args.json:
        _out(_dumps([entry for _, entry in entries]))
        return 0
    rows = [(info.uuid, info.url, info.cpu, "-" if entry["ttl"] is None else entry["ttl"])
            for info, entry in entries]
    _out(_table(("UUID", "URL", "CPU", "TTL"), rows))
    return 0


# --- get ----------------------------------------------------------------------------------------

def cmd_get(args: argparse.Namespace) -> int:
    config = _config(args)
    domain = _domain(args.domain)
    try:
        uuid = validate_uuid(args.uuid)
    except ConfigError as error:
        raise UsageError(str(error)) from error
    key = "%s/%s/%s" % (config.prefix, domain, uuid)
    with EtcdConnection(config) as connection:
        response = connection.get(key)
        if not response.kvs:
            raise Failure("no server %s in domain %r (etcd %s)" % (uuid, domain, config.describe()))
        kv = response.kvs[0]
        if args.json:
            _out(_dumps(_entry(connection, kv)))
        else:
            _out(kv.value.decode("utf-8", "replace"))
    return 0


# --- watch --------------------------------------------------------------------------------------

class _Printer:
    """Prints one line per server event; a closed stdout (``| head``) stops the watch."""

    def __init__(self, as_json: bool, stop: threading.Event):
        self.as_json = as_json
        self.stop = stop
        self._lock = threading.Lock()

    def __call__(self, event: str, info: ServerInfo) -> None:
        if self.as_json:
            line = json.dumps({"time": _now(), "event": event, "domain": info.domain,
                               "uuid": info.uuid, "url": info.url, "cpu": info.cpu},
                              ensure_ascii=False)
        else:
            line = "%s  %-7s  %s  %s  %s" % (_now(), event, info.domain, info.uuid, info.url)
        with self._lock:
            try:
                print(line, flush=True)
            except (BrokenPipeError, ValueError):
                self.stop.set()

    def changes(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        for info in removed:
            self("left", info)
        for info in added:
            self("joined", info)


def cmd_watch(args: argparse.Namespace) -> int:
    config = _config(args)
    stop = threading.Event()
    printer = _Printer(args.json, stop)
    domain = _domain(args.domain) if args.domain is not None else None
    discovery = Discovery(domain, etcd=config)  # None: every domain under the prefix
    reader = threading.current_thread()

    def report(added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        # The listener is in place before the first read, so no change can fall between the
        # read and the watch: what start() reads on this thread is "present", the rest is news.
        if threading.current_thread() is reader:
            for info in added:
                printer("present", info)
        else:
            printer.changes(added, removed)

    discovery.add_listener(report)
    try:
        discovery.start()
        _wait_for_signal(stop, interval=0.2)
    finally:
        discovery.close()
    return 0


# --- call ---------------------------------------------------------------------------------------

def _parse_arg(text: str) -> Any:
    """A JSON value if it parses as one (``42``, ``true``, ``[1,2]``, ``"x"``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def cmd_call(args: argparse.Namespace) -> int:
    from hprose.common import HproseException

    from .client import ClusterClient

    config = _config(args)
    domain = _domain(args.domain)
    if args.call_timeout is not None and args.call_timeout <= 0:
        raise UsageError("--timeout must be positive, got %r" % args.call_timeout)
    call_args = [_parse_arg(text) for text in args.args]
    with ClusterClient(domain, etcd=config, timeout=args.call_timeout,
                       idempotent=args.idempotent or None) as client:
        if not client.servers():
            # The client read the whole domain on creation: waiting for a server to appear
            # would only delay the answer a person at a shell wants.
            raise Failure("no server in domain %r (etcd %s)" % (domain, config.describe()))
        try:
            result = client.invoke(args.method, call_args)
        except HproseException as error:
            # A business error the server sent back (an hprose "E" reply).
            raise Failure("%s failed on domain %r: %s" % (args.method, domain, error)) from error
    _out(_dumps(result) if args.json else _plain(result))
    return 0


# --- register -----------------------------------------------------------------------------------

def _check_reachable(url: str, timeout: float) -> None:
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
        _warn("nothing answers at %s yet (%s); registering it anyway" % (url, error))


def cmd_register(args: argparse.Namespace) -> int:
    from .record import new_uuid, usable_cpus
    from .registrar import Registrar

    config = _config(args)
    try:
        info = ServerInfo(_domain(args.domain), args.url, args.uuid or new_uuid(),
                          usable_cpus() if args.cpu is None else args.cpu)
        registrar = Registrar(info, etcd=config, ttl=args.ttl, heartbeat=args.heartbeat)
    except ConfigError as error:
        raise UsageError(str(error)) from error
    _check_reachable(info.url, min(config.timeout, 2.0))
    registrar.start()
    try:
        if args.json:
            _out(json.dumps({"key": registrar.key, "uuid": info.uuid, "url": info.url,
                             "cpu": info.cpu, "lease": registrar.lease_id, "ttl": args.ttl}))
        else:
            _out(registrar.key)
        _note("keeping %s registered (ttl %d s, heartbeat %g s); Ctrl-C removes it"
              % (info.url, args.ttl, args.heartbeat))
        _wait_for_signal(threading.Event())
    finally:
        registrar.close()
    _note("removed %s" % registrar.key)
    return 0


# --- etcd ---------------------------------------------------------------------------------------

def cmd_etcd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .embedded import EmbeddedEtcd

    log_path = None
    if args.data_dir is not None:
        data_dir = Path(args.data_dir).absolute()
        log_path = data_dir.with_name(data_dir.name + ".log")
    server = EmbeddedEtcd(args.data_dir, host=args.host, client_port=args.client_port,
                          peer_port=args.peer_port, name="hprose-cluster", fast=False,
                          log_path=log_path)
    try:
        server.start()
        _out("etcd is up at %s (data in %s, log in %s)"
             % (server.endpoint, server.data_dir, server.log_path))
        _out("export %s=%s" % (ENV_ENDPOINTS, server.endpoint))
        _note("Ctrl-C stops it")

        def poll() -> None:
            if not server.running:
                raise Failure("etcd at %s exited (code %s); log tail:\n%s"
                              % (server.endpoint, server._proc.returncode if server._proc else "?",
                                 server.log_tail()))

        _wait_for_signal(threading.Event(), poll)
    finally:
        server.close()
    _note("etcd at %s stopped" % server.endpoint)
    return 0


# --- demo ---------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return 0 if run_demo(args.transport, rounds=args.rounds) == 0 else 1


# --- the parser ---------------------------------------------------------------------------------

def _add_global_options(parser: argparse.ArgumentParser, *, top: bool,
                        with_timeout: bool = True) -> None:
    """The etcd/output options.  Accepted before the subcommand and after it: on subparsers
    their default is SUPPRESS so an option given before the subcommand is not overwritten."""
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("etcd and output options")
    group.add_argument("--etcd", metavar="ENDPOINTS", default=default(None),
                       help="etcd endpoints, host:port or URLs, comma-separated "
                            "(default: $%s, else 127.0.0.1:2379)" % ENV_ENDPOINTS)
    group.add_argument("--prefix", default=default(None),
                       help="registry key prefix (default: $%s, else hprose-service)" % ENV_PREFIX)
    if with_timeout:
        group.add_argument("--timeout", type=float, metavar="SECONDS",
                           default=default(DEFAULT_ETCD_TIMEOUT),
                           help="bound on each etcd request (default: %g)" % DEFAULT_ETCD_TIMEOUT)
    group.add_argument("--ca", metavar="FILE", default=default(None),
                       help="CA certificate for TLS to etcd (default: $%s)" % ENV_CA)
    group.add_argument("--cert", metavar="FILE", default=default(None),
                       help="client certificate for etcd (default: $%s)" % ENV_CERT)
    group.add_argument("--key", metavar="FILE", default=default(None),
                       help="client certificate key for etcd (default: $%s)" % ENV_KEY)
    group.add_argument("--user", default=default(None),
                       help="etcd user (default: $%s)" % ENV_USER)
    group.add_argument("--password", default=default(None),
                       help="etcd password; prefer $%s, as arguments are visible to other "
                            "users of the machine" % ENV_PASSWORD)
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print JSON instead of tables")
    group.add_argument("--debug", action="store_true", default=default(False),
                       help="show tracebacks and the library's debug log on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Look at, follow, call and feed an hprose-cluster registry in etcd.",
        epilog="examples:\n"
               "  hprose-cluster etcd --client-port 2379       # a development etcd\n"
               "  export HPROSE_CLUSTER_ETCD=127.0.0.1:2379\n"
               "  hprose-cluster ls\n"
               "  hprose-cluster ls tcp.hello.server\n"
               "  hprose-cluster call tcp.hello.server hello world\n"
               "  hprose-cluster watch\n\n"
               "exit codes: 0 success, 1 lookup or call failed, 2 usage error")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, example: str,
                with_timeout: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n" + example)
        _add_global_options(p, top=False, with_timeout=with_timeout)
        return p

    p = command("ls", "List the domains with their server count, or the servers of DOMAIN.",
                "  $ hprose-cluster ls\n"
                "  DOMAIN            SERVERS\n"
                "  tcp.hello.server  3\n"
                "  $ hprose-cluster ls tcp.hello.server --json\n")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    p.set_defaults(func=cmd_ls)

    p = command("get", "Print the record of one server as stored (--json adds key, lease, "
                       "ttl and mod_revision).",
                "  $ hprose-cluster get tcp.hello.server 0b1d...\n"
                '  {"UUID":"0b1d...","Domain":"tcp.hello.server","ServerUrl":"tcp4://..","CPU":2}\n')
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("uuid", metavar="UUID")
    p.set_defaults(func=cmd_get)

    p = command("watch", "Print one line per server that joins or leaves DOMAIN (or any "
                         "domain), until Ctrl-C.",
                "  $ hprose-cluster watch tcp.hello.server\n"
                "  2024-05-01T10:00:00  present  tcp.hello.server  0b1d...  tcp4://127.0.0.1:4321\n"
                "  2024-05-01T10:00:07  left     tcp.hello.server  0b1d...  tcp4://127.0.0.1:4321\n")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    p.set_defaults(func=cmd_watch)

    p = command("call", "Call METHOD on a server of DOMAIN and print the result. Each ARG is "
                        "a JSON value if it parses as one, else a string.",
                "  $ hprose-cluster call tcp.hello.server hello world\n"
                "  Hello world\n"
                "  $ hprose-cluster call tcp.hello.server sum 1 2 --json\n"
                "  3\n"
                "(--timeout here is the call's timeout; put the etcd one before 'call')\n",
                with_timeout=False)
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("args", nargs="*", metavar="ARG")
    p.add_argument("--timeout", dest="call_timeout", type=float, default=DEFAULT_CALL_TIMEOUT,
                   metavar="SECONDS", help="call timeout (default: %g)" % DEFAULT_CALL_TIMEOUT)
    p.add_argument("--idempotent", action="store_true",
                   help="the call may be retried on another server after a failure that "
                        "may have reached the first one")
    p.set_defaults(func=cmd_call)

    p = command("register", "Keep a record for a server that does not register itself (a Go "
                            "or PHP hprose server) until Ctrl-C, then remove it.",
                "  $ hprose-cluster register tcp.hello.server tcp4://10.0.0.5:4321 --cpu 8\n"
                "  hprose-service/tcp.hello.server/4f6c...\n")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("url", metavar="URL", help="http(s)://, tcp(4|6)://, ws(s):// URL or unix:/path")
    p.add_argument("--uuid", help="the record's UUID (default: a new random one)")
    p.add_argument("--cpu", type=int, help="CPU count clients weigh by (default: this machine's)")
    p.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default: 10)")
    p.add_argument("--heartbeat", type=float, default=3.0,
                   help="seconds between lease refreshes (default: 3)")
    p.set_defaults(func=cmd_register)

    p = command("etcd", "Run an etcd server for development in the foreground, until Ctrl-C.",
                "  $ hprose-cluster etcd --data-dir ./etcd-data\n"
                "  etcd is up at 127.0.0.1:2379 (data in ...)\n"
                "  export HPROSE_CLUSTER_ETCD=127.0.0.1:2379\n")
    p.add_argument("--data-dir", metavar="DIR",
                   help="keep the data here (default: a temporary folder removed on exit)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--client-port", type=int, default=2379, metavar="PORT",
                   help="client port (default: 2379; 0 picks a free one)")
    p.add_argument("--peer-port", type=int, default=2380, metavar="PORT",
                   help="peer port (default: 2380; 0 picks a free one)")
    p.set_defaults(func=cmd_etcd)

    p = command("demo", "Run the hello demo: embedded etcd, three servers, one client, a "
                        "SIGKILLed primary, no failed call.",
                "  $ hprose-cluster demo --transport http\n")
    p.add_argument("--transport", choices=("tcp", "http", "ws", "unix"), default="tcp")
    p.add_argument("--rounds", type=int, default=6, help="calls before and after the kill")
    p.set_defaults(func=cmd_demo)
    top.register(command, _config)
    return parser


_handler: logging.Handler | None = None


def _setup_logging(debug: bool) -> None:
    """Library warnings go to stderr like our own; one handler even if main() runs twice."""
    global _handler
    library = logging.getLogger("hprose_cluster")
    if _handler is not None:
        library.removeHandler(_handler)
    handler = _handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        library.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(logging.Formatter(PROG + ": %(levelname)s: %(message)s"))
        library.setLevel(logging.WARNING)
    library.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)

    def fail(code: int, error: BaseException) -> int:
        if args.debug:
            traceback.print_exc()
        message = str(error) or type(error).__name__
        print("%s: error: %s" % (PROG, message), file=sys.stderr, flush=True)
        return code

    try:
        if getattr(args, "timeout", None) is not None and args.timeout <= 0:
            raise UsageError("--timeout must be positive, got %r" % args.timeout)
        return args.func(args)
    except (UsageError, ConfigError) as error:
        return fail(2, error)
    except (Failure, HproseClusterError) as error:
        return fail(1, error)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's own
        # flush at exit from complaining about the same pipe.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # a file of --ca/--data-dir, a port in use...
        return fail(1, error)
    except Exception as error:  # a remote error type we do not know, or a bug: say it, exit 1
        return fail(1, error)

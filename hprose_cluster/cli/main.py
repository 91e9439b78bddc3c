"""The parser built from the command table, logging set-up, and one error line per failure."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Sequence

from .. import __version__
from ..errors import ConfigError, HproseClusterError
from .commands import COMMANDS
from .errors import Failure, UsageError
from .options import add_global_options
from .output import PROG, note

log = logging.getLogger("hprose_cluster.cli")


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
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, __version__))
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n" + command.example)
        add_global_options(p, top=False, with_timeout=command.etcd_timeout)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
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
        note("error: " + (str(error) or type(error).__name__))
        return code

    try:
        if getattr(args, "timeout", None) is not None and args.timeout <= 0:
            raise UsageError("--timeout must be positive, got %r" % args.timeout)
        return int(args.func(args))
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

"""``hprose-cluster call DOMAIN METHOD [ARG...]``: one call through a ClusterClient."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from .. import options
from ..command import Command
from ..errors import Failure, UsageError
from ..output import dumps, out, warn

DEFAULT_CALL_TIMEOUT = 10.0


_LOOKS_LIKE_NUMBER = re.compile(r"-?\.?\d")


def _not_json(constant: str) -> Any:
    raise ValueError("%s is not JSON" % constant)


def parse_arg(position: int, text: str) -> Any:
    """A JSON value if it parses as one (``42``, ``true``, ``[1,2]``, ``"x"``), else the text.

    Text that starts like a JSON array, object or string but does not parse is a typo that
    would otherwise reach the server as a string: refused.  Text that starts like a number
    (``1.2.3``) is sent as the string, with a warning saying so.  ``NaN`` and ``Infinity``
    are not JSON: plain strings.
    """
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError as error:
        stripped = text.lstrip()
        if stripped[:1] in ("[", "{", '"'):
            raise UsageError("argument %d %r is not valid JSON (%s); to send it as a string, "
                             "quote it as a JSON string" % (position, text, error)) from error
        if _LOOKS_LIKE_NUMBER.match(stripped):
            warn("argument %d %r is not a JSON number; sent as the string %r"
                 % (position, text, text))
        return text


def plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", metavar="DOMAIN")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument("args", nargs="*", metavar="ARG")
    parser.add_argument("--timeout", dest="call_timeout", type=float,
                        default=DEFAULT_CALL_TIMEOUT, metavar="SECONDS",
                        help="call timeout (default: %g)" % DEFAULT_CALL_TIMEOUT)
    parser.add_argument("--idempotent", action="store_true",
                        help="the call may be retried on another server after a failure that "
                             "may have reached the first one")


def run(args: argparse.Namespace) -> int:
    from hprose.common import HproseException

    from ...client import ClusterClient

    config = options.config(args)
    domain = options.domain(args.domain)
    if args.call_timeout is not None and args.call_timeout <= 0:
        raise UsageError("--timeout must be positive, got %r" % args.call_timeout)
    call_args = [parse_arg(i, text) for i, text in enumerate(args.args, 1)]
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
    out(dumps(result) if args.json else plain(result))
    return 0


COMMAND = Command(
    "call", "Call METHOD on a server of DOMAIN and print the result. Each ARG is a JSON value "
            "if it parses as one, else a string (text starting with [, { or \" must be "
            "valid JSON).",
    "  $ hprose-cluster call tcp.hello.server hello world\n"
    "  Hello world\n"
    "  $ hprose-cluster call tcp.hello.server sum 1 2 --json\n"
    "  3\n"
    "(--timeout here is the call's timeout; put the etcd one before 'call')\n",
    add_arguments, run, etcd_timeout=False)

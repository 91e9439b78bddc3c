"""The etcd and output options every subcommand takes, and checks of typed-in names."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from ..etcd import (ENV_CA, ENV_CERT, ENV_ENDPOINTS, ENV_KEY, ENV_PASSWORD, ENV_PREFIX, ENV_USER,
                    EtcdConfig)
from ..record import validate_domain, validate_uuid
from .errors import UsageError

DEFAULT_ETCD_TIMEOUT = 5.0


def add_global_options(parser: argparse.ArgumentParser, *, top: bool,
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


def config(args: argparse.Namespace) -> EtcdConfig:
    return EtcdConfig.from_env(endpoints=args.etcd, prefix=args.prefix, timeout=args.timeout,
                               ca_file=args.ca, cert_file=args.cert, key_file=args.key,
                               user=args.user, password=args.password)


def domain(text: str) -> str:
    try:
        return validate_domain(text)
    except ConfigError as error:
        raise UsageError(str(error)) from error


def uuid(text: str) -> str:
    try:
        return validate_uuid(text)
    except ConfigError as error:
        raise UsageError(str(error)) from error

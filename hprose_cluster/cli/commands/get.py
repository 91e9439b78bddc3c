"""``hprose-cluster get DOMAIN UUID``: one server's record as stored."""

from __future__ import annotations

import argparse

from ...etcd import EtcdConnection
from .. import options
from ..command import Command
from ..errors import Failure
from ..output import dumps, out
from ..registry import entry, read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", metavar="DOMAIN")
    parser.add_argument("uuid", metavar="UUID")


def run(args: argparse.Namespace) -> int:
    config = options.config(args)
    domain = options.domain(args.domain)
    uuid = options.uuid(args.uuid)
    key = "%s/%s/%s" % (config.prefix, domain, uuid)
    with EtcdConnection(config) as connection:
        response = read(connection, lambda: connection.get(key))
        if not response.kvs:
            raise Failure("no server %s in domain %r (etcd %s)" % (uuid, domain, config.describe()))
        kv = response.kvs[0]
        if args.json:
            out(dumps(entry(connection, kv)))
        else:
            out(kv.value.decode("utf-8", "replace"))
    return 0


COMMAND = Command(
    "get", "Print the record of one server as stored (--json adds key, lease, ttl and "
           "mod_revision).",
    "  $ hprose-cluster get tcp.hello.server 0b1d...\n"
    '  {"UUID":"0b1d...","Domain":"tcp.hello.server","ServerUrl":"tcp4://..","CPU":2}\n',
    add_arguments, run)

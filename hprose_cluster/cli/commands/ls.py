"""``hprose-cluster ls [DOMAIN]``: the domains with their server count, or one domain's servers."""

from __future__ import annotations

import argparse

from ...etcd import EtcdConfig, EtcdConnection
from ...record import RecordError, ServerInfo
from .. import options
from ..command import Command
from ..errors import Failure
from ..output import dumps, note, out, table, warn
from ..registry import entry, read, split_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", nargs="?", metavar="DOMAIN")


def run(args: argparse.Namespace) -> int:
    config = options.config(args)
    if args.domain is not None:
        return _ls_domain(args, config, options.domain(args.domain))
    with EtcdConnection(config) as connection:
        response = read(connection, lambda: connection.get_prefix(config.prefix + "/"))
    counts: dict[str, list[int]] = {}
    for kv in response.kvs:
        key = kv.key
        domain, _ = split_key(config.prefix, key)
        servers_skipped = counts.setdefault(domain, [0, 0])
        try:
            ServerInfo.from_json(kv.value, key)
        except RecordError as error:
            warn("skipping %s" % error)
            servers_skipped[1] += 1
        else:
            servers_skipped[0] += 1
    rows = [{"domain": d, "servers": c[0], "skipped": c[1]} for d, c in sorted(counts.items())]
    if args.json:
        out(dumps(rows))
        return 0
    if not rows:
        note("no domain under %s/ (etcd %s)" % (config.prefix, config.describe()))
        return 0
    if any(row["skipped"] for row in rows):
        out(table(("DOMAIN", "SERVERS", "SKIPPED"),
                  [(r["domain"], r["servers"], r["skipped"]) for r in rows]))
    else:
        out(table(("DOMAIN", "SERVERS"), [(r["domain"], r["servers"]) for r in rows]))
    return 0


def _ls_domain(args: argparse.Namespace, config: EtcdConfig, domain: str) -> int:
    prefix = "%s/%s/" % (config.prefix, domain)
    entries = []
    with EtcdConnection(config) as connection:
        response = read(connection, lambda: connection.get_prefix(prefix))
        for kv in response.kvs:
            key = kv.key
            try:
                info = ServerInfo.from_json(kv.value, key)
            except RecordError as error:
                warn("skipping %s" % error)
                continue
            entries.append((info, entry(connection, kv)))
    if not entries:
        raise Failure("no server in domain %r (etcd %s)" % (domain, config.describe()))
    if args.json:
        out(dumps([item for _, item in entries]))
        return 0
    rows = [(info.uuid, info.url, info.cpu, "-" if item["ttl"] is None else item["ttl"])
            for info, item in entries]
    out(table(("UUID", "URL", "CPU", "TTL"), rows))
    return 0


COMMAND = Command(
    "ls", "List the domains with their server count, or the servers of DOMAIN.",
    "  $ hprose-cluster ls\n"
    "  DOMAIN            SERVERS\n"
    "  tcp.hello.server  3\n"
    "  $ hprose-cluster ls tcp.hello.server --json\n",
    add_arguments, run)

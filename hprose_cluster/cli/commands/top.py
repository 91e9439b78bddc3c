"""``hprose-cluster top [DOMAIN]``: a live table of a domain's servers, refreshed in place.

Each refresh reads the domain's records and their leases from etcd, and for every record that
names a metrics URL (the optional ``Metrics`` field a cluster server with ``metrics_port``
writes) reads the server's ``/metrics``: calls/s and errors/s (from the change of
``hprose_cluster_server_requests_total`` since the previous refresh), requests in flight, and
the seconds left on the record's lease.  A server without metrics, or whose metrics cannot be
read, still gets its row with what etcd alone shows.  ``--once`` prints one table (or, with
``--json``, one JSON document) measured over one interval, for scripts; the live view with
``--json`` prints one JSON document per line and refresh.

``COMMAND`` is the subcommand; ``show(args, config)`` runs it with parsed arguments and a
config (tests pass an output stream).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from ...errors import ConfigError, EtcdError
from ...etcd import EtcdConfig, EtcdConnection
from ...metrics import metrics_url
from ...metrics.scrape import fetch, server_totals
from ...record import RecordError, ServerInfo
from .. import options
from ..command import Command

log = logging.getLogger("hprose_cluster.cli.top")

DEFAULT_INTERVAL = 2.0
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


@dataclass
class ServerRow:
    """One server as ``top`` shows it (``--json`` prints these fields)."""

    domain: str
    uuid: str
    url: str
    cpu: int
    lease_ttl: int | None        # seconds left on the record's lease; None: no lease
    metrics_url: str | None      # from the record's Metrics field
    metrics: str | None          # "ok", "unreachable", or None (the record names none)
    calls_total: float | None = None
    errors_total: float | None = None
    in_flight: float | None = None
    calls_per_s: float | None = None
    errors_per_s: float | None = None


class Sampler:
    """Reads one domain (or every domain) from etcd and the servers' metrics, and turns the
    change of the counters between two samples into rates."""

    def __init__(self, connection: EtcdConnection, domain: str | None, scrape_timeout: float):
        self.connection = connection
        self.domain = domain
        self.prefix = "%s/%s/" % (connection.config.prefix, domain) if domain is not None \
            else "%s/" % connection.config.prefix
        self.scrape_timeout = scrape_timeout
        self._previous: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._warned: set[str] = set()

    def sample(self) -> list[ServerRow]:
        records = self._records()
        urls = sorted({url for _, url, _ in records if url is not None})
        texts = self._scrape(urls)
        now = time.monotonic()
        rows = []
        for info, url, ttl in records:
            row = ServerRow(info.domain, info.uuid, info.url, info.cpu, ttl, url,
                            None if url is None else ("ok" if texts.get(url) is not None
                                                      else "unreachable"))
            text = texts.get(url) if url is not None else None
            if url is not None and text is not None:
                totals = server_totals(text, info.domain)
                row.calls_total, row.errors_total = totals["calls"], totals["errors"]
                row.in_flight = totals["in_flight"]
                key = (url, info.domain)
                before = self._previous.get(key)
                self._previous[key] = (now, totals["calls"], totals["errors"])
                if before is not None and now > before[0] and totals["calls"] >= before[1]:
                    elapsed = now - before[0]
                    row.calls_per_s = (totals["calls"] - before[1]) / elapsed
                    row.errors_per_s = max(0.0, totals["errors"] - before[2]) / elapsed
            rows.append(row)
        return rows

    def _records(self) -> list[tuple[ServerInfo, str | None, int | None]]:
        response = self.connection.get_prefix(self.prefix)
        records = []
        for kv in response.kvs:
            key = kv.key
            try:
                info = ServerInfo.from_json(kv.value, key)
            except RecordError as error:
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("skipping %s", error)
                continue
            lease = kv.lease
            ttl = self.connection.lease_ttl(lease) if lease else None
            records.append((info, metrics_url(info), ttl))
        records.sort(key=lambda r: (r[0].domain, r[0].url, r[0].uuid))
        return records

    def _scrape(self, urls: list[str]) -> dict[str, str | None]:
        if not urls:
            return {}

        def one(url: str) -> str | None:
            try:
                return fetch(url, self.scrape_timeout)
            except (OSError, ValueError) as error:
                log.debug("cannot read %s: %s", url, error)
                return None

        with ThreadPoolExecutor(max_workers=min(16, len(urls)),
                                thread_name_prefix="hprose-cluster-top") as pool:
            return dict(zip(urls, pool.map(one, urls)))


# --- output -------------------------------------------------------------------------------------

def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return ("%.*f" % (digits, value)) if digits else "%d" % round(value)


def table(rows: list[ServerRow], all_domains: bool) -> str:
    headers = (["DOMAIN"] if all_domains else []) + [
        "UUID", "URL", "CPU", "LEASE", "CALLS/S", "ERRORS/S", "IN-FLIGHT", "METRICS"]
    cells = [headers]
    for row in rows:
        cells.append(([row.domain] if all_domains else []) + [
            row.uuid[:8], row.url, str(row.cpu),
            "-" if row.lease_ttl is None else ("gone" if row.lease_ttl < 0 else
                                               "%ds" % row.lease_ttl),
            _number(row.calls_per_s), _number(row.errors_per_s), _number(row.in_flight, 0),
            row.metrics or "-"])
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
                     for line in cells)


def frame(rows: list[ServerRow], domain: str | None, config: EtcdConfig, interval: float,
          error: str | None = None) -> str:
    what = "domain %s" % domain if domain is not None else "every domain"
    head = "hprose-cluster top: %s, etcd %s, %s (every %gs; Ctrl-C quits)" % (
        what, config.describe(), time.strftime("%H:%M:%S"), interval)
    lines = [head, ""]
    if error is not None:
        lines.append("etcd: %s (showing the last rows read)" % error)
    lines.append(table(rows, domain is None) if rows else "no server registered")
    return "\n".join(lines)


def document(rows: list[ServerRow], domain: str | None, config: EtcdConfig,
             interval: float, indent: int | None = 2, error: str | None = None) -> str:
    """The JSON of one sample (the live view with ``--json`` prints one per line; ``error``:
    etcd could not be read, the rows are the last ones read)."""
    value: dict[str, Any] = {"domain": domain, "etcd": config.describe(), "interval": interval,
                             "servers": [asdict(row) for row in rows]}
    if error is not None:
        value["error"] = error
    return json.dumps(value, indent=indent)


# --- the command --------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    return show(args, options.config(args))


def show(args: argparse.Namespace, config: EtcdConfig, out: TextIO | None = None) -> int:
    """Run ``top`` with the parsed ``args`` (``domain``, ``interval``, ``once``, ``json``)."""
    out = out if out is not None else sys.stdout
    domain = options.domain(args.domain) if args.domain is not None else None
    interval = float(args.interval)
    if not interval > 0:
        raise ConfigError("--interval must be positive, got %r" % args.interval)
    scrape_timeout = min(interval, 2.0)
    with EtcdConnection(config) as connection:
        sampler = Sampler(connection, domain, scrape_timeout)
        if args.once:
            sampler.sample()
            time.sleep(interval)
            rows = sampler.sample()
            if args.json:
                print(document(rows, domain, config, interval), file=out, flush=True)
            else:
                print(table(rows, domain is None) if rows else "no server registered",
                      file=out, flush=True)
            return 0
        return _live(sampler, domain, config, interval, out, as_json=args.json)


def _live(sampler: Sampler, domain: str | None, config: EtcdConfig, interval: float,
          out: TextIO, as_json: bool) -> int:
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    clear = _CLEAR if out.isatty() and not as_json else ""
    rows: list[ServerRow] = []
    try:
        while not stop.is_set():
            error = None
            try:
                rows = sampler.sample()
            except EtcdError as failure:
                error = str(failure)
            if as_json:
                text = document(rows, domain, config, interval, None, error) + "\n"
            else:
                text = clear + frame(rows, domain, config, interval, error) + "\n" + \
                    ("" if clear else "\n")
            out.write(text)
            out.flush()
            stop.wait(interval)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", nargs="?", metavar="DOMAIN")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help="seconds between refreshes (default: %g)" % DEFAULT_INTERVAL)
    parser.add_argument("--once", action="store_true",
                        help="print one table (or JSON with --json) measured over one "
                             "interval, then exit")


COMMAND = Command(
    "top", "Show DOMAIN's servers (or every domain's) in a table refreshed in place: calls/s, "
           "errors/s and calls in flight from the metrics each server names in its record, "
           "and the seconds left on its lease.",
    "  $ hprose-cluster top tcp.hello.server\n"
    "  UUID      URL                    CPU  LEASE  CALLS/S  ERRORS/S  IN-FLIGHT  METRICS\n"
    "  0b1d2c3e  tcp4://127.0.0.1:4321  2    9s     812.4    0.0       3          ok\n"
    "  $ hprose-cluster top tcp.hello.server --once --json\n",
    add_arguments, run)

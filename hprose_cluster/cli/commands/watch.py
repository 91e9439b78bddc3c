"""``hprose-cluster watch [DOMAIN]``: one line per server that joins or leaves."""

from __future__ import annotations

import argparse
import json
import threading

from ...discovery import Discovery
from ...etcd import EtcdConfig
from ...record import ServerInfo
from .. import options
from ..command import Command
from ..output import now
from ..signals import StopSignals


class Printer:
    """Prints one line per server event; a closed stdout (``| head``) stops the watch."""

    def __init__(self, as_json: bool, stop: StopSignals):
        self.as_json = as_json
        self.stop = stop
        self._lock = threading.Lock()

    def __call__(self, event: str, info: ServerInfo) -> None:
        if self.as_json:
            line = json.dumps({"time": now(), "event": event, "domain": info.domain,
                               "uuid": info.uuid, "url": info.url, "cpu": info.cpu},
                              ensure_ascii=False)
        else:
            line = "%s  %-7s  %s  %s  %s" % (now(), event, info.domain, info.uuid, info.url)
        with self._lock:
            try:
                print(line, flush=True)
            except (OSError, ValueError):  # a closed pipe or terminal
                self.stop.request()

    def changes(self, added: list[ServerInfo], removed: list[ServerInfo]) -> None:
        for info in removed:
            self("left", info)
        for info in added:
            self("joined", info)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", nargs="?", metavar="DOMAIN")


def run(args: argparse.Namespace) -> int:
    config = options.config(args)
    domain = options.domain(args.domain) if args.domain is not None else None
    with StopSignals() as stop:
        return _watch(config, domain, Printer(args.json, stop), stop)


def _watch(config: EtcdConfig, domain: str | None, printer: Printer, stop: StopSignals) -> int:
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
        stop.wait_until_stopped(interval=0.2)
    finally:
        discovery.close()
    return 0


COMMAND = Command(
    "watch", "Print one line per server that joins or leaves DOMAIN (or any domain), "
             "until Ctrl-C.",
    "  $ hprose-cluster watch tcp.hello.server\n"
    "  2024-05-01T10:00:00  present  tcp.hello.server  0b1d...  tcp4://127.0.0.1:4321\n"
    "  2024-05-01T10:00:07  left     tcp.hello.server  0b1d...  tcp4://127.0.0.1:4321\n",
    add_arguments, run)

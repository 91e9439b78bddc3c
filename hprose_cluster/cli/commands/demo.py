"""``hprose-cluster demo``: the hello demo (embedded etcd, three servers, a killed primary)."""

from __future__ import annotations

import argparse

from ..command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=("tcp", "http", "ws", "unix"), default="tcp")
    parser.add_argument("--rounds", type=int, default=6,
                        help="calls before and after the kill (at least 2; default 6)")


def run(args: argparse.Namespace) -> int:
    from ...demo import run_demo

    return run_demo(args.transport, rounds=args.rounds)


COMMAND = Command(
    "demo", "Run the hello demo: embedded etcd, three servers, one client, a SIGKILLed "
            "primary, no failed call.",
    "  $ hprose-cluster demo --transport http\n",
    add_arguments, run)

"""The subcommands, in the order ``--help`` lists them.

Each module defines ``COMMAND``, a :class:`~hprose_cluster.cli.command.Command`; adding a
subcommand is one module here and one entry below.  Modules import what their ``run()``
needs inside it, so ``hprose-cluster --help`` stays fast.
"""

from __future__ import annotations

from ..command import Command
from . import call, demo, etcd, get, ls, register, top, watch

COMMANDS: tuple[Command, ...] = (
    ls.COMMAND,
    get.COMMAND,
    watch.COMMAND,
    call.COMMAND,
    register.COMMAND,
    etcd.COMMAND,
    demo.COMMAND,
    top.COMMAND,
)

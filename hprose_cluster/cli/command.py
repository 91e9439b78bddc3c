"""What a subcommand module provides: its name, help, example, arguments and its run()."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    """One subcommand.  ``example`` is shown under ``--help``; ``etcd_timeout=False`` for a
    command that uses ``--timeout`` for something else (``call``: the call's timeout)."""

    name: str
    help: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    etcd_timeout: bool = True

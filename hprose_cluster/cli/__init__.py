"""The ``hprose-cluster`` command: look at, follow, call and feed a registry from a shell.

Subcommands: ``ls``, ``get``, ``watch``, ``call``, ``register``, ``etcd``, ``demo``.  Output is
an aligned table for people, or JSON with ``--json`` for scripts.  Exit codes: 0 success,
1 a lookup or call failed (no such domain or UUID, etcd unreachable, a remote error),
2 a usage error (bad option, bad domain, bad URL).  Errors are one line on stderr,
``hprose-cluster: error: ...``; ``--debug`` adds the traceback and the library's debug log.

The commands that run until stopped (``watch``, ``register``, ``etcd``) stop cleanly on
SIGINT (Ctrl-C), SIGTERM or SIGHUP (a closed terminal) and exit 0: a ``register`` revokes its
lease so the record goes at once, an ``etcd`` removes its temporary data.

Layout: ``main.py`` (parser and error handling), ``output.py`` (tables, JSON, messages),
``options.py`` (etcd options and argument checks), ``signals.py`` (stopping on signals), and
one module per subcommand under ``commands/``; a new subcommand is a new module there plus
one line in ``commands/__init__.py``.
"""

from .main import build_parser, main
from .output import PROG

__all__ = ["PROG", "build_parser", "main"]

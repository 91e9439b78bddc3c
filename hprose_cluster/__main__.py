"""``python -m hprose_cluster``: the same as the ``hprose-cluster`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The demo in one command: python examples/hello/demo.py [--transport tcp|http|ws|unix]"""

import sys

from hprose_cluster.demo import main

if __name__ == "__main__":
    sys.exit(main())

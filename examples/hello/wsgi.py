"""The hello service as a WSGI application: hprose's own HproseHttpService, which any WSGI
server can serve.  With gunicorn and hprose-cluster's hooks it registers itself:

    HPROSE_CLUSTER_DOMAIN=http.hello.server gunicorn -c python:hprose_cluster.gunicorn \\
        -b 127.0.0.1:8000 -w 2 --chdir examples/hello wsgi:app

Run as a script it is a plain hprose server that registers nothing (the kind of server
``hprose-cluster register`` is for):

    python examples/hello/wsgi.py 8080
"""

import os
import sys
from wsgiref.simple_server import make_server

from hprose import HproseHttpService


def hello(name):
    return "Hello %s" % name


def sum(a, b):  # noqa: A001 - the remote method is called "sum"
    return a + b


def whoami():
    return "pid %d" % os.getpid()


app = HproseHttpService()
for function in (hello, sum, whoami):
    app.addFunction(function)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    with make_server("127.0.0.1", port, app) as httpd:
        print("plain hprose server at http://127.0.0.1:%d/ (Ctrl-C stops it)" % port,
              flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass

"""Serving metrics over HTTP: ``serve(port, host)`` and the endpoint of a cluster server.

A separate port from the hprose one, since an hprose HTTP server answers GET with its
function list.  The endpoint is prometheus-client's WSGI app on a small threaded server with
a named daemon thread, closed with ``close()`` (prometheus-client's ``start_http_server``
cannot be stopped).  In prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set, as under gunicorn), ``serve()`` with no registry aggregates every process's files.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from typing import Any, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..errors import ConfigError

log = logging.getLogger("hprose_cluster.metrics")

_WILDCARDS = ("", "0.0.0.0", "::")
_MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps its values in per-process files (gunicorn workers)."""
    return any(os.environ.get(name) for name in _MULTIPROC_ENV)


def mark_process_dead(pid: int) -> None:
    if multiprocess_mode():
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("metrics %s: " + format, self.address_string(), *args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def _host_in_url(host: str) -> str:
    return "[%s]" % host if ":" in host else host


class Endpoint:
    """``http://host:port/metrics`` of one registry, served until ``close()``."""

    def __init__(self, port: int, host: str, registry: Any):
        from prometheus_client import make_wsgi_app

        class Server(_Server):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self._httpd = make_server(host, port, make_wsgi_app(registry), Server,
                                      handler_class=_Quiet)
        except OSError as error:
            raise ConfigError("cannot serve metrics on %s:%d: %s" % (host, port, error)) from error
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="hprose-cluster-metrics-%d" % self.port)
        self._thread.start()
        self._closed = False
        log.info("serving metrics at %s", self.url)

    @property
    def url(self) -> str:
        return "http://%s:%d/metrics" % (_host_in_url(self.host), self.port)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> "Endpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<metrics Endpoint %s>" % self.url


def serve(port: int, host: str, registry: Any = None) -> Endpoint:
    if registry is None:
        if multiprocess_mode():
            from prometheus_client import CollectorRegistry, multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            from . import current_registry
            registry = current_registry()
            if registry is None:
                raise ConfigError("metrics are off (no prometheus-client, or metrics.disable()): "
                                  "nothing to serve")
    return Endpoint(port, host, registry)


class ServerEndpoint:
    """A cluster server's metrics: served from ``_on_listening()`` (before it registers, so
    the record can name them) to ``_before_stop()``, when the server has a ``metrics_port``."""

    def __init__(self, server: Any, port: int | None, host: str, registry: Any):
        self._server = server
        self._registry = registry
        self._port = port
        self._host = host
        self._endpoint: Endpoint | None = None
        self._lock = threading.Lock()

    def listening(self) -> None:
        if self._port is None:
            return
        with self._lock:
            if self._endpoint is None:
                self._endpoint = Endpoint(self._port, self._host, self._registry)

    def record_fields(self) -> Mapping[str, Any]:
        endpoint = self._endpoint
        if endpoint is None:
            return {}
        from . import RECORD_FIELD
        return {RECORD_FIELD: self.url}

    @property
    def url(self) -> str | None:
        """The metrics URL clients are told: a wildcard bind is named by the server's host."""
        endpoint = self._endpoint
        if endpoint is None:
            return None
        host = endpoint.host
        if host in _WILDCARDS:
            from urllib.parse import urlsplit
            host = urlsplit(self._server.url).hostname or "127.0.0.1"
        return "http://%s:%d/metrics" % (_host_in_url(host), endpoint.port)

    def close(self) -> None:
        with self._lock:
            endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()

"""hprose over HTTP(S): a client with persistent connections and a threaded server."""

from .client import HttpClient, HttpTransport
from .framing import DEFAULT_MAX_BODY
from .server import HttpServer

__all__ = ["DEFAULT_MAX_BODY", "HttpTransport", "HttpClient", "HttpServer"]

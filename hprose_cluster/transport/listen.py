"""What every server transport does the same way: open its listening socket, name its URL."""

from __future__ import annotations

import socket
import sys


def open_listener(host: str, port: int, family: int = socket.AF_UNSPEC,
                  backlog: int = 128) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (port 0: a free port).

    Fails with an OSError that names the address, whatever step failed.
    """
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    except OSError as error:
        if sock is not None:
            sock.close()
        raise type(error)(error.errno, "cannot listen on %s:%s: %s"
                          % (host, port, error.strerror or error)) from error


def server_url(scheme: str, host: str, port: int, path: str = "") -> str:
    """``scheme://host:port`` + ``path``, with an IPv6 host in brackets."""
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d%s" % (scheme, host, port, path)

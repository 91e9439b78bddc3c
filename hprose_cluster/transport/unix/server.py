"""The hprose unix-socket server: ``TcpServer`` listening on AF_UNIX, nothing copied.

The protocol, the lifecycle (drain, signals, deregister first), the worker pool and every
limit are the TCP server's; only the listening socket and the URL differ.  The socket file is
created when the server listens (a stale one, which no server answers on, is replaced; one a
live server answers on is refused) and removed when it stops, if it is still ours.  Without a
path the socket goes in a new private temporary folder, removed with it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import stat
import tempfile
from ...errors import ConfigError
from ...record import MAX_UNIX_PATH
from .. import framing
from ..tcp import TcpServer

__all__ = ["UnixServer"]

_log = logging.getLogger("hprose_cluster.transport.unix")


def _in_use(path: str) -> bool:
    """Whether a server answers on the socket file ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class UnixServer(TcpServer):
    """An hprose service on a unix socket: ``UnixServer("/run/hello.sock")``; ``url`` is
    ``unix:/run/hello.sock``.  Half- and full-duplex requests are served as by ``TcpServer``,
    whose options it takes (``max_frame``, ``workers``, ``max_pending``, ``send_timeout``).

    ``port`` is ignored (a unix socket has none); it is accepted so that the cluster mixin can
    pass its ``(host, port)`` pair, the path standing for the host.  ``mode`` sets the socket
    file's permissions (default: what the umask gives).
    """

    def __init__(self, path: str | None = None, port: int = 0, *, mode: int | None = None,
                 max_frame: int = framing.DEFAULT_MAX_FRAME, workers: int = 16,
                 max_pending: int = 64, send_timeout: float | None = 30.0):
        if path:
            path = os.path.abspath(path)
            if len(path.encode("utf-8")) > MAX_UNIX_PATH:
                raise ConfigError("unix socket path %r is longer than %d bytes"
                                  % (path, MAX_UNIX_PATH))
        self.path: str | None = path or None  # None: a temporary folder's, made on listen()
        self.mode = mode
        self._temp_dir: str | None = None
        self._inode: int | None = None
        super().__init__(path or "", 0, family=socket.AF_UNIX, max_frame=max_frame,
                         workers=workers, max_pending=max_pending, send_timeout=send_timeout,
                         open_socket=self._open_socket, kind="unix")

    @property
    def scheme(self) -> str:
        return "unix"

    @property
    def url(self) -> str:
        """``unix:/path/to.sock``."""
        if self.path is None:
            raise RuntimeError("UnixServer has no socket path yet; call listen() or start()")
        return "unix:" + self.path

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop as ``TcpServer`` does, then remove the socket file (and a temporary folder)."""
        try:
            super().stop(drain_timeout)
        finally:
            self._remove()

    def _open_socket(self) -> socket.socket:
        if self.path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="hprose-cluster-")
            self.path = os.path.join(self._temp_dir, "hprose.sock")
        path = self.path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None:
            if not stat.S_ISSOCK(info.st_mode):
                raise OSError(errno.EEXIST, "cannot listen on %s: it exists and is not a socket"
                              % path)
            if _in_use(path):
                raise OSError(errno.EADDRINUSE, "cannot listen on %s: a server answers on it"
                              % path)
            _log.info("replacing the stale unix socket %s", path)
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            if self.mode is not None:
                os.chmod(path, self.mode)
            self._inode = os.stat(path).st_ino
            sock.listen(128)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise type(error)(error.errno, "cannot listen on %s: %s"
                              % (path, error.strerror or error)) from error
        return sock

    def _remove(self) -> None:
        path = self.path
        try:
            if path is not None and self._inode is not None and \
                    os.stat(path).st_ino == self._inode:
                os.unlink(path)  # still ours: nobody replaced it meanwhile
        except OSError:
            pass
        self._inode = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __repr__(self) -> str:
        return "<UnixServer %s>" % (self.path or "(not listening)")

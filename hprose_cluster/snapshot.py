"""An opt-in local copy of each followed domain, for a client started while etcd is away.

A client that restarts during an etcd outage would otherwise fail to start although its
servers are up (Dubbo and Nacos keep such a file for the same reason).  With a snapshot
directory (``snapshot_dir=`` on Discovery and ClusterClient, or ``HPROSE_CLUSTER_SNAPSHOT_DIR``)
a Discovery writes its domain's records to ``<dir>/<prefix>/<domain>.json`` whenever they
change, and reads that file only when etcd cannot be reached at start.  The view is then
marked ``from_snapshot`` until etcd answers, which replaces it; a snapshot is never used
while etcd answers.

The file is plain JSON, the records exactly as etcd holds them (so an operator can read it)::

    {"format": 1, "prefix": "hprose-service", "domain": "tcp.hello.server",
     "etcd": "127.0.0.1:2379", "revision": 42, "saved": "2024-05-01T12:00:00Z",
     "records": [{"UUID": "...", "Domain": "tcp.hello.server", "ServerUrl": "...", "CPU": 8}]}

It is written to a temporary file in the same directory, flushed, then renamed over the old
one, so a reader (or a crash) never sees half a file.  A file that cannot be read back (bad
JSON, another domain's, a record that does not validate) raises SnapshotError naming the
file, and the caller ignores it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from .errors import ConfigError, HproseClusterError
from .record import RecordError, ServerInfo

log = logging.getLogger("hprose_cluster.snapshot")

ENV_SNAPSHOT_DIR = "HPROSE_CLUSTER_SNAPSHOT_DIR"
FORMAT = 1
_MAX_NAME = 200  # file names stay well under the usual 255-byte limit


class SnapshotError(HproseClusterError):
    """A snapshot file that cannot be used (unreadable, corrupt, or another domain's)."""


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot file held: the servers, the etcd revision they were read at, and
    when the file was written (seconds since the epoch)."""

    servers: tuple[ServerInfo, ...]
    revision: int
    saved: float
    path: Path


def snapshot_dir(value: str | os.PathLike[str] | None) -> Path | None:
    """The directory to use: ``value``, else ``$HPROSE_CLUSTER_SNAPSHOT_DIR``, else None (off)."""
    if value is None or value == "":
        value = os.environ.get(ENV_SNAPSHOT_DIR) or None
    if value is None:
        return None
    try:
        return Path(os.fspath(value))
    except TypeError as error:
        raise ConfigError("snapshot_dir must be a path, got %r" % (value,)) from error


def keeper_for(directory: str | os.PathLike[str] | None, prefix: str, domain: str,
               etcd: str = "") -> "SnapshotKeeper | None":
    """The keeper of ``domain``'s snapshot in ``directory`` (or the environment's), or None
    when snapshots are off."""
    path = snapshot_dir(directory)
    if path is None:
        return None
    return SnapshotKeeper(DomainSnapshot(path, prefix, domain, etcd))


def _file_name(text: str) -> str:
    name = quote(text, safe="")
    if name.startswith("."):  # never a hidden file, never "." or ".."
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        name = name[:_MAX_NAME - 17] + "-" + digest
    return name


class DomainSnapshot:
    """The snapshot file of one domain under one prefix."""

    def __init__(self, directory: Path, prefix: str, domain: str, etcd: str = ""):
        self.prefix = prefix
        self.domain = domain
        self.etcd = etcd
        self.path = directory / _file_name(prefix) / (_file_name(domain) + ".json")

    def save(self, servers: Iterable[ServerInfo], revision: int) -> None:
        """Replace the file with these servers, atomically.  Raises OSError."""
        records = [json.loads(server.to_json()) for server in servers]
        document = {"format": FORMAT, "prefix": self.prefix, "domain": self.domain,
                    "etcd": self.etcd, "revision": revision,
                    "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "records": records}
        data = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix="." + self.path.name + ".", suffix=".tmp",
                                         dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def load(self) -> Snapshot | None:
        """The snapshot, or None if there is no file; SnapshotError if it cannot be used."""
        try:
            data = self.path.read_bytes()
            saved = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError as error:
            raise SnapshotError("snapshot %s cannot be read: %s" % (self.path, error)) from error
        try:
            servers, revision = self._parse(data)
        except (ValueError, TypeError, KeyError, RecordError, RecursionError) as error:
            raise SnapshotError("snapshot %s is corrupt: %s" % (self.path, error)) from error
        return Snapshot(servers, revision, saved, self.path)

    def _parse(self, data: bytes) -> tuple[tuple[ServerInfo, ...], int]:
        document: Any = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a format-%d snapshot document" % FORMAT)
        if document.get("domain") != self.domain or document.get("prefix") != self.prefix:
            raise ValueError("it holds domain %r under prefix %r, not %r under %r"
                             % (document.get("domain"), document.get("prefix"),
                                self.domain, self.prefix))
        revision = document.get("revision")
        records = document.get("records")
        if isinstance(revision, bool) or not isinstance(revision, int) \
                or not isinstance(records, list):
            raise ValueError("revision or records missing")
        servers = []
        for record in records:
            if not isinstance(record, dict):
                raise ValueError("a record is not a JSON object: %r" % (record,))
            key = "%s/%s/%s" % (self.prefix, self.domain, record.get("UUID"))
            servers.append(ServerInfo.from_json(json.dumps(record), key))
        return tuple(servers), revision


class SnapshotKeeper:
    """Keeps one domain's snapshot file up to date, at most once per ``min_interval``.

    The discovery thread calls ``changed()`` when its view changes and ``flush()`` when
    ``due`` has come: a burst of changes costs one write, and the file is never more than
    ``min_interval`` seconds behind the view (``flush(force=True)`` at start and close).
    A failing write is logged once until a write succeeds again.
    """

    def __init__(self, snapshot: DomainSnapshot, min_interval: float = 1.0):
        self.snapshot = snapshot
        self.min_interval = min_interval
        self.due: float | None = None  # monotonic time of the pending write, if any
        self.note = ""  # why no snapshot was used at start, for the error that follows
        self._written = float("-inf")
        self._failing = False

    def load_at_start(self, what: str, error: Exception) -> Snapshot | None:
        """The snapshot to start from, as etcd cannot be reached (``error``); None if there
        is none or it is corrupt (logged, and said in ``note``)."""
        snapshot = self.snapshot
        try:
            loaded = snapshot.load()
        except SnapshotError as corrupt:
            log.warning("%s; ignoring it", corrupt)
            self.note = " (%s; ignored)" % corrupt
            return None
        if loaded is None:
            self.note = " (no snapshot at %s yet)" % snapshot.path
            return None
        log.warning("%s: etcd cannot be reached (%s); starting from the snapshot %s of %s "
                    "(%d servers), until etcd answers", what, error, snapshot.path,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(loaded.saved)),
                    len(loaded.servers))
        return loaded

    def changed(self) -> None:
        if self.due is None:
            self.due = max(time.monotonic(), self._written + self.min_interval)

    def flush(self, servers: Iterable[ServerInfo], revision: int, force: bool = False) -> None:
        if self.due is None or (not force and time.monotonic() < self.due):
            return
        self.due = None
        self._written = time.monotonic()
        try:
            self.snapshot.save(servers, revision)
        except OSError as error:
            (log.debug if self._failing else log.warning)(
                "cannot write the snapshot of domain %r to %s: %s",
                self.snapshot.domain, self.snapshot.path, error)
            self._failing = True
        else:
            self._failing = False

"""The registry record: what a server writes in etcd and every hprose peer reads.

Key ``<prefix>/<domain>/<uuid>``, value
``{"UUID":"...","Domain":"...","ServerUrl":"...","CPU":8}`` -- that field order and compact
separators, byte for byte what the hprose Go registry writes.  Readers accept extra fields;
writers may add optional ones (``Weight``) but never change the four.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid as uuid_module
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_PREFIX = "hprose-service"
MAX_RECORD_BYTES = 64 * 1024
TLS_TCP_SCHEMES = ("tcps", "tcp4s", "tcp6s", "tls")  # TLS over TCP, as hprose for Node.js names it
SCHEMES = ("http", "https", "tcp", "tcp4", "tcp6") + TLS_TCP_SCHEMES + ("ws", "wss", "unix")
MAX_UNIX_PATH = 107  # bytes: sockaddr_un.sun_path holds 108 with the final NUL
REQUIRED_FIELDS = (("UUID", str), ("Domain", str), ("ServerUrl", str), ("CPU", int))
_MAX_NAME = 253
# What _check_name rejects, as one regex: a client of 10,000 servers checks 20,000 names at
# start-up, and a per-character Python loop made that most of a second.
_BAD_NAME_CHAR = re.compile(r"[/\s\x00-\x1f\x7f]")
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")
_REQUIRED_NAMES = frozenset(name for name, _ in REQUIRED_FIELDS)
# A client of a 100,000-server domain parses and validates 100,000 records at start-up; the two
# fast paths below took that from ~22 us to ~7 us a record.  Each accepts only what the general
# path accepts with the same result, and everything else takes the general path.
# 1. A URL of the common shape (scheme://host[:port][/path], a plain host name or IPv4
#    address): what urlsplit would accept, checked with one regular expression.
_SIMPLE_URL = re.compile(r"(https?|tcp[46]?)://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
                         r"(?::([0-9]{1,5}))?(?:/.*)?", re.DOTALL)
# 2. A record exactly as we and the Go registry write it (the four fields in order, compact,
#    strings without escapes or control characters, no extra fields): read by one regular
#    expression instead of the JSON decoder.
_CANONICAL = re.compile(rb'\{"UUID":"([^"\\\x00-\x1f]*)","Domain":"([^"\\\x00-\x1f]*)",'
                        rb'"ServerUrl":"([^"\\\x00-\x1f]*)","CPU":([1-9][0-9]{0,17})\}')
# 3. The same record with every field of the shape the checks accept without looking
#    further (ASCII names and a URL of the simple shape above): read by one regular
#    expression and not checked again (a client of 100,000 servers: ~3 us a record instead
#    of ~7 us).  The port range, the URL's length and the key are still checked.
_NAME = rb'[!#-.0-\[\]-~]{1,253}'  # printable ASCII but for space, '"', '/' and '\'
_TRUSTED = re.compile(rb'\{"UUID":"(' + _NAME + rb')","Domain":"(' + _NAME + rb')",'
                      rb'"ServerUrl":"((?:https?|tcp[46]?)://[A-Za-z0-9](?:[A-Za-z0-9.-]*'
                      rb'[A-Za-z0-9])?(?::([0-9]{1,5}))?(?:/[!#-\[\]-~]*)?)",'
                      rb'"CPU":([1-9][0-9]{0,17})\}')
# Parsed records without optional fields share one read-only empty mapping.
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class RecordError(ConfigError):
    """A registry value that is not a valid record (bad JSON, missing field, wrong type...)."""


def _check_name(kind: str, value: Any) -> str:
    """Domains and UUIDs become path segments of a key: no ``/``, blanks or control characters."""
    if not isinstance(value, str):
        raise ConfigError("%s must be a string, got %r" % (kind, value))
    if not value:
        raise ConfigError("%s must not be empty, got ''" % kind)
    if len(value) > _MAX_NAME:
        raise ConfigError("%s %r is longer than %d characters" % (kind, value[:40] + "...", _MAX_NAME))
    if _BAD_NAME_CHAR.search(value) is None:
        return value
    for char in value:
        if char == "/" or char.isspace() or ord(char) < 32 or ord(char) == 127:
            raise ConfigError("%s %r contains %r: slashes, whitespace and control characters "
                              "are not allowed" % (kind, value, char))
    return value


def validate_domain(domain: Any) -> str:
    """Return ``domain`` if it can name a service (``tcp.hello.server``), else raise ConfigError."""
    return _check_name("domain", domain)


def validate_uuid(value: Any) -> str:
    """Return ``value`` if it can be the last segment of a key, else raise ConfigError."""
    return _check_name("UUID", value)


def validate_url(url: Any) -> str:
    """Return ``url`` if we can call it: a known scheme, a host and a port (implicit 80/443
    for http/https and ws/wss, explicit for tcp and TLS over TCP), and no blanks or control
    characters.  A unix socket is ``unix:/absolute/path`` (Go's spelling; ``unix:///path``
    too)."""
    if not isinstance(url, str) or not url:
        raise ConfigError("ServerUrl must be a non-empty string, got %r" % (url,))
    if len(url) > 2048:
        raise ConfigError("ServerUrl %r... is longer than 2048 characters" % url[:40])
    if _BAD_URL_CHAR.search(url):
        raise ConfigError("ServerUrl %r contains whitespace or control characters" % url)
    simple = _SIMPLE_URL.fullmatch(url)
    if simple is not None:
        port = simple.group(2)
        if port is None:
            if simple.group(1).startswith("http"):
                return url
        elif 0 < int(port) <= 65535:
            return url
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError("ServerUrl %r has scheme %r; supported: %s"
                          % (url, parts.scheme, ", ".join(SCHEMES)))
    if parts.scheme == "unix":
        unix_socket_path(url)
        return url
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigError("ServerUrl %r has an invalid port" % url) from error
    if not parts.hostname:
        raise ConfigError("ServerUrl %r has no host" % url)
    if port is None and parts.scheme not in ("http", "https", "ws", "wss"):
        raise ConfigError("ServerUrl %r has no port" % url)
    if port == 0:
        raise ConfigError("ServerUrl %r has port 0, which no client can call" % url)
    return url


def unix_socket_path(url: str) -> str:
    """The socket path of ``unix:/path/to.sock`` (or ``unix:///path/to.sock``), as Go's hprose
    reads it; ``ConfigError`` for a relative or over-long path, or a host other than
    localhost."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        raise ConfigError("ServerUrl %r is not a unix: URL" % (url,))
    if parts.netloc not in ("", "localhost"):
        raise ConfigError("ServerUrl %r names host %r: a unix socket is local, write "
                          "unix:/path/to.sock" % (url, parts.netloc))
    path = parts.path
    if not path.startswith("/"):
        raise ConfigError("ServerUrl %r needs an absolute socket path (unix:/path/to.sock)"
                          % (url,))
    if len(path.encode("utf-8")) > MAX_UNIX_PATH:
        raise ConfigError("ServerUrl %r: the socket path is longer than %d bytes"
                          % (url, MAX_UNIX_PATH))
    return path


def validate_cpu(cpu: Any) -> int:
    if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 1:
        raise ConfigError("CPU must be an integer >= 1, got %r" % (cpu,))
    return cpu


def usable_cpus() -> int:
    """Cores this process may run on (affinity-aware), which is what a server can use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def new_uuid() -> str:
    return str(uuid_module.uuid4())


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server of a domain, as registered in etcd.  (Slots: a client of 100,000 servers
    holds 100,000 of them, ~10 MB less without a dict each.)"""

    domain: str
    url: str
    uuid: str = field(default_factory=new_uuid)
    cpu: int = field(default_factory=usable_cpus)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        validate_domain(self.domain)
        validate_url(self.url)
        validate_uuid(self.uuid)
        validate_cpu(self.cpu)

    @property
    def weight(self) -> float:
        """Optional ``Weight`` field if a writer set one, else the CPU count."""
        value = self.extra.get("Weight")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(self.cpu)

    def key(self, prefix: str = DEFAULT_PREFIX) -> str:
        return "%s/%s/%s" % (prefix, self.domain, self.uuid)

    def to_json(self) -> bytes:
        """The value, byte-for-byte as the Go registry writes it (extras after the four)."""
        value: dict[str, Any] = {"UUID": self.uuid, "Domain": self.domain,
                                 "ServerUrl": self.url, "CPU": self.cpu}
        for name, extra in self.extra.items():
            if name not in value:
                value[name] = extra
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, key: str | None = None) -> "ServerInfo":
        """Parse a stored value; ``key`` (when known) must agree with its Domain and UUID.

        Raises RecordError naming the key and what is wrong.
        """
        if isinstance(data, bytes):  # the common shape first: no other work for it
            trusted = _TRUSTED.fullmatch(data)
            if trusted is not None:
                info = cls._trusted(trusted, key)
                if info is not None:
                    return info
        where = "record %s" % key if key else "record"
        size = len(data.encode("utf-8", "replace")) if isinstance(data, str) else len(data)
        if size > MAX_RECORD_BYTES:
            raise RecordError("%s is %d bytes, over the %d byte limit"
                              % (where, size, MAX_RECORD_BYTES))
        fields = cls._canonical_fields(data)
        if fields is not None:
            server, domain, url, cpu = fields
            extra: Mapping[str, Any] = _NO_EXTRA
        else:
            value = cls._json_fields(data, where)
            server, domain, url, cpu = (value["UUID"], value["Domain"], value["ServerUrl"],
                                        value["CPU"])
            extra = {k: v for k, v in value.items() if k not in _REQUIRED_NAMES} or _NO_EXTRA
        if isinstance(domain, str):
            domain = sys.intern(domain)  # one string for all the records of a domain
        try:
            info = cls(domain=domain, url=url, uuid=server, cpu=cpu, extra=extra)
        except RecordError:
            raise
        except ConfigError as error:
            raise RecordError("%s: %s" % (where, error)) from error
        if key is not None:
            segments = key.rsplit("/", 2)
            if len(segments) != 3 or segments[1] != info.domain:
                raise RecordError("%s has Domain %r, which disagrees with its key"
                                  % (where, info.domain))
            if segments[2] != info.uuid:
                raise RecordError("%s has UUID %r, which disagrees with its key"
                                  % (where, info.uuid))
        return info

    @classmethod
    def _trusted(cls, match: "re.Match[bytes]", key: str | None) -> "ServerInfo | None":
        """The record ``_TRUSTED`` matched, built without the checks its shape already
        passed; None when the general path must judge it (a port out of range, a URL too
        long, a key that disagrees: it raises the error)."""
        server, domain, url, port, cpu = match.groups()
        if port is None:
            if not url.startswith(b"http"):
                return None
        elif not 0 < int(port) <= 65535:
            return None
        if len(url) > 2048:
            return None
        uuid, name = server.decode("ascii"), sys.intern(domain.decode("ascii"))
        if key is not None and not key.endswith("/%s/%s" % (name, uuid)):
            return None
        info = object.__new__(cls)
        _set_domain(info, name)
        _set_url(info, url.decode("ascii"))
        _set_uuid(info, uuid)
        _set_cpu(info, int(cpu))
        _set_extra(info, _NO_EXTRA)
        return info

    @staticmethod
    def _canonical_fields(data: bytes | str) -> tuple[str, str, str, int] | None:
        """(UUID, Domain, ServerUrl, CPU) of a record in the canonical form, else None."""
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        match = _CANONICAL.fullmatch(raw)
        if match is None:
            return None
        server, domain, url, cpu = match.groups()
        try:
            return server.decode(), domain.decode(), url.decode(), int(cpu)
        except UnicodeDecodeError:
            return None  # the general path reports it

    @staticmethod
    def _json_fields(data: bytes | str, where: str) -> dict[str, Any]:
        """The decoded JSON object, its four fields checked for presence and type."""
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise RecordError("%s is not valid JSON: %s" % (where, error)) from error
        except RecursionError as error:  # thousands of nested brackets: hostile, not a record
            raise RecordError("%s is not a record: JSON nested too deeply" % where) from error
        if not isinstance(value, dict):
            raise RecordError("%s is not a JSON object" % where)
        for name, kind in REQUIRED_FIELDS:
            if name not in value:
                raise RecordError("%s lacks the field %s" % (where, name))
            if not isinstance(value[name], kind) or isinstance(value[name], bool):
                raise RecordError("%s field %s has the wrong type: %r"
                                  % (where, name, value[name]))
        return value


# The slots' setters, for ServerInfo._trusted (a frozen dataclass refuses plain assignment).
_set_domain = vars(ServerInfo)["domain"].__set__
_set_url = vars(ServerInfo)["url"].__set__
_set_uuid = vars(ServerInfo)["uuid"].__set__
_set_cpu = vars(ServerInfo)["cpu"].__set__
_set_extra = vars(ServerInfo)["extra"].__set__

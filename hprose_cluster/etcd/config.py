"""Where etcd is and how to reach it: ``EtcdConfig``, from arguments or ``HPROSE_CLUSTER_*``.

A config is frozen and hashable: equal configurations share one connection per process
(``shared_connection``), so every field that changes how we talk to etcd is part of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..record import DEFAULT_PREFIX

DEFAULT_ENDPOINT = "127.0.0.1:2379"
ENV_ENDPOINTS = "HPROSE_CLUSTER_ETCD"
ENV_PREFIX = "HPROSE_CLUSTER_PREFIX"
ENV_CA = "HPROSE_CLUSTER_ETCD_CA"
ENV_CERT = "HPROSE_CLUSTER_ETCD_CERT"
ENV_KEY = "HPROSE_CLUSTER_ETCD_KEY"
ENV_USER = "HPROSE_CLUSTER_ETCD_USER"
ENV_PASSWORD = "HPROSE_CLUSTER_ETCD_PASSWORD"


def parse_endpoint(text: Any) -> tuple[str, int, bool | None]:
    """``host:port``, ``[v6]:port``, ``http://h:p`` or ``https://h:p`` -> (host, port, secure).

    Raises ConfigError naming the endpoint and what is wrong with it.
    """
    if not isinstance(text, str):
        raise ConfigError("etcd endpoint must be a string like 'host:port', got %r" % (text,))
    shown = text.strip()
    secure: bool | None = None
    if not shown:
        raise ConfigError("etcd endpoint %r is empty" % text)
    if any(char.isspace() or ord(char) < 32 for char in shown):
        raise ConfigError("etcd endpoint %r contains whitespace or control characters" % text)
    parts = urlsplit(shown if "://" in shown else "//" + shown)
    if parts.scheme:
        if parts.scheme not in ("http", "https"):
            raise ConfigError("etcd endpoint %r: scheme must be http or https" % shown)
        secure = parts.scheme == "https"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError("etcd endpoint %r must be just host:port (no path, query or user)"
                          % shown)
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigError("etcd endpoint %r has an invalid port" % shown) from error
    if port is None:
        port = 2379
    if not 1 <= port <= 65535:
        raise ConfigError("etcd endpoint %r has an invalid port %d" % (shown, port))
    if not parts.hostname:
        raise ConfigError("etcd endpoint %r has no host" % shown)
    return parts.hostname, port, secure


def format_endpoint(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


@dataclass(frozen=True)
class EtcdConfig:
    """Where the registry lives and how to reach it.

    ``endpoints``: ``"host:port,host:port"``, URLs, or a list of either.  ``timeout`` bounds
    every etcd request (seconds).  TLS is used when ``ca_file`` is given or an endpoint is an
    ``https://`` URL; ``cert_file``/``key_file`` add a client certificate (mutual TLS).
    """

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    prefix: str = DEFAULT_PREFIX
    timeout: float = 5.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def __post_init__(self) -> None:
        endpoints = self.endpoints
        if isinstance(endpoints, str):
            endpoints = tuple(e for e in endpoints.split(",") if e.strip())
        elif isinstance(endpoints, (list, tuple)):
            endpoints = tuple(endpoints)
        else:
            raise ConfigError("etcd endpoints must be a string or a list of strings, got %r"
                              % (endpoints,))
        if not endpoints:
            raise ConfigError("no etcd endpoint given")
        normalized = []
        tls = self.tls or bool(self.ca_file) or bool(self.cert_file)
        for text in endpoints:
            host, port, secure = parse_endpoint(text)
            tls = tls or bool(secure)
            normalized.append(format_endpoint(host, port))
        object.__setattr__(self, "endpoints", tuple(normalized))
        object.__setattr__(self, "tls", tls)
        prefix = self.prefix
        if not isinstance(prefix, str) or not prefix or prefix.endswith("/"):
            raise ConfigError("etcd prefix %r must be a non-empty string not ending with '/'"
                              % (prefix,))
        if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in prefix):
            raise ConfigError("etcd prefix %r contains whitespace or control characters"
                              % (prefix,))
        for name in ("user", "password"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError("etcd %s must be a non-empty string" % name
                                  + ("" if name == "password" else ", got %r" % (value,)))
        if (self.user is None) != (self.password is None):
            raise ConfigError("etcd user and password must be given together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("etcd cert_file and key_file (client certificate and its key) "
                              "must be given together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None:
                path = os.fspath(path)
                object.__setattr__(self, name, path)
                if not os.path.isfile(path) or not os.access(path, os.R_OK):
                    raise ConfigError("etcd %s %r is not a readable file" % (name, path))
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
                or timeout == float("inf"):
            raise ConfigError("etcd timeout must be a positive number of seconds, got %r"
                              % (timeout,))

    @classmethod
    def from_env(cls, **overrides: Any) -> "EtcdConfig":
        """Settings from ``HPROSE_CLUSTER_*`` variables, then ``overrides`` that are not None."""
        values: dict[str, Any] = {
            "endpoints": os.environ.get(ENV_ENDPOINTS) or DEFAULT_ENDPOINT,
            "prefix": os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX,
            "ca_file": os.environ.get(ENV_CA) or None,
            "cert_file": os.environ.get(ENV_CERT) or None,
            "key_file": os.environ.get(ENV_KEY) or None,
            "user": os.environ.get(ENV_USER) or None,
            "password": os.environ.get(ENV_PASSWORD) or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def coerce(cls, etcd: "EtcdConfig | str | Sequence[str] | None", **overrides: Any) -> "EtcdConfig":
        """Accept what users pass as ``etcd=``: a config, endpoints, or None for the environment."""
        if isinstance(etcd, EtcdConfig):
            return etcd
        if etcd is None:
            return cls.from_env(**overrides)
        return cls.from_env(endpoints=etcd if isinstance(etcd, str) else tuple(etcd), **overrides)

    def describe(self) -> str:
        """The endpoints as messages show them: ``https://`` in front when TLS is on."""
        scheme = "https://" if self.tls else ""
        return ",".join(scheme + endpoint for endpoint in self.endpoints)

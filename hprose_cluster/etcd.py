"""The only module that talks to the etcd client library.

``EtcdConfig`` says where etcd is and how to reach it (endpoints, prefix, timeouts, TLS, auth),
from arguments or ``HPROSE_CLUSTER_*`` environment variables.  ``EtcdConnection`` wraps one
``etcd3`` client and works around its known defects (ETCD.md):

1. the client is always built as ``MultiEndpointEtcd3Client`` with ``failover=True`` and a short
   ``time_retry``, so one failed call never disables an endpoint for minutes;
2. with user/password on a plaintext channel, ``call_credentials`` is cleared after construction
   (the token still travels as metadata);
3. the auth token is never refreshed by the library: on ``UNAUTHENTICATED`` we rebuild the client
   (a fresh token) and retry once; watchers are told through ``generation`` to re-watch;
4. lease-not-found comes back as ``TTL == 0``: ``keepalive`` returns the TTL and leaves the
   judgement to the registrar;
6. a watch is always created with a timeout and never from inside a watch callback.

Every failure is raised as ``EtcdError`` naming the endpoints and the cause.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import etcd3
import etcd3.events
import etcd3.exceptions
import grpc

from .errors import ConfigError, EtcdError
from .record import DEFAULT_PREFIX

log = logging.getLogger("hprose_cluster.etcd")

DEFAULT_ENDPOINT = "127.0.0.1:2379"
ENV_ENDPOINTS = "HPROSE_CLUSTER_ETCD"
ENV_PREFIX = "HPROSE_CLUSTER_PREFIX"
ENV_CA = "HPROSE_CLUSTER_ETCD_CA"
ENV_CERT = "HPROSE_CLUSTER_ETCD_CERT"
ENV_KEY = "HPROSE_CLUSTER_ETCD_KEY"
ENV_USER = "HPROSE_CLUSTER_ETCD_USER"
ENV_PASSWORD = "HPROSE_CLUSTER_ETCD_PASSWORD"


def _parse_endpoint(text: str) -> tuple[str, int, bool | None]:
    """``host:port``, ``[v6]:port``, ``http://h:p`` or ``https://h:p`` -> (host, port, secure)."""
    text = text.strip()
    secure: bool | None = None
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    if parts.scheme:
        if parts.scheme not in ("http", "https"):
            raise ConfigError("etcd endpoint %r: scheme must be http or https" % text)
        secure = parts.scheme == "https"
    try:
        port = parts.port or 2379
    except ValueError as error:
        raise ConfigError("etcd endpoint %r has an invalid port" % text.lstrip("/")) from error
    if not parts.hostname:
        raise ConfigError("etcd endpoint %r has no host" % text.lstrip("/"))
    return parts.hostname, port, secure


def _format_endpoint(host: str, port: int) -> str:
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
        if isinstance(self.endpoints, str):
            object.__setattr__(self, "endpoints", tuple(
                e for e in self.endpoints.split(",") if e.strip()))
        endpoints = tuple(self.endpoints)
        if not endpoints:
            raise ConfigError("no etcd endpoint given")
        normalized = []
        tls = self.tls or bool(self.ca_file)
        for text in endpoints:
            host, port, secure = _parse_endpoint(text)
            tls = tls or bool(secure)
            normalized.append(_format_endpoint(host, port))
        object.__setattr__(self, "endpoints", tuple(normalized))
        object.__setattr__(self, "tls", tls)
        if not self.prefix or self.prefix.endswith("/"):
            raise ConfigError("etcd prefix %r must be non-empty and not end with '/'" % self.prefix)
        if (self.user is None) != (self.password is None):
            raise ConfigError("etcd user and password must be given together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("etcd client certificate and key must be given together")
        if self.timeout <= 0:
            raise ConfigError("etcd timeout must be positive, got %r" % self.timeout)

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
        return ",".join(self.endpoints)


def _status_code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return code()
        except Exception:  # pragma: no cover - defensive: exotic RpcError
            return None
    return None


def _cause(error: BaseException) -> str:
    details = getattr(error, "details", None)
    if callable(details):
        try:
            text = details()
        except Exception:  # pragma: no cover
            text = None
        if text:
            code = _status_code(error)
            return "%s: %s" % (code.name if code else "error", text)
    return str(error) or type(error).__name__


def is_auth_error(error: BaseException) -> bool:
    return _status_code(error) == grpc.StatusCode.UNAUTHENTICATED


def is_lease_not_found(error: BaseException) -> bool:
    return _status_code(error) == grpc.StatusCode.NOT_FOUND or "lease not found" in _cause(error)


class WatchHandle:
    """A live prefix watch; ``cancel()`` stops it."""

    def __init__(self, connection: "EtcdConnection", client: Any, watch_id: Any):
        self._connection = connection
        self._client = client
        self._watch_id = watch_id

    def cancel(self) -> None:
        try:
            self._client.cancel_watch(self._watch_id)
        except Exception as error:  # the stream may already be gone with its client
            log.debug("cancelling watch %s: %s", self._watch_id, error)


class EtcdConnection:
    """One etcd client for one process part (a Registrar, a Discovery), with our workarounds."""

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False
        self.generation = 0  # bumped each time the client is rebuilt

    # --- client construction --------------------------------------------------------------

    def _build(self) -> Any:
        config = self.config
        creds = None
        if config.tls:
            try:
                ca = open(config.ca_file, "rb").read() if config.ca_file else None
                cert = open(config.cert_file, "rb").read() if config.cert_file else None
                key = open(config.key_file, "rb").read() if config.key_file else None
            except OSError as error:
                raise ConfigError("cannot read an etcd TLS file: %s" % error) from error
            creds = grpc.ssl_channel_credentials(ca, key, cert)
        endpoints = []
        for text in config.endpoints:
            host, port, _ = _parse_endpoint(text)
            grpc_host = "[%s]" % host if ":" in host else host
            endpoints.append(etcd3.Endpoint(grpc_host, port, secure=config.tls, creds=creds,
                                            time_retry=1.0))
        try:
            client = etcd3.MultiEndpointEtcd3Client(
                endpoints, timeout=config.timeout, user=config.user,
                password=config.password, failover=True)
        except Exception as error:
            for endpoint in endpoints:
                endpoint.close()
            raise self._error("cannot connect to etcd", error) from error
        if config.user is not None and not config.tls:
            # Defect 2: call credentials on an insecure channel fail every call; the token
            # still goes as metadata.
            client.call_credentials = None
            client._stubs.clear()
        return client

    @property
    def client(self) -> Any:
        with self._lock:
            if self._closed:
                raise EtcdError("etcd connection to %s is closed" % self.config.describe())
            if self._client is None:
                self._client = self._build()
            return self._client

    def _rebuild(self, stale: Any) -> None:
        """Replace ``stale`` by a fresh client (new token); watchers re-watch on the new one."""
        with self._lock:
            if self._client is not stale or self._closed:
                return
            self._client = None
            self.generation += 1
        log.info("rebuilding the etcd client for %s (auth token renewal)", self.config.describe())
        try:
            stale.close()
        except Exception:  # pragma: no cover
            pass

    def _error(self, what: str, error: BaseException) -> EtcdError:
        return EtcdError("%s (etcd %s): %s" % (what, self.config.describe(), _cause(error)))

    def call(self, what: str, func: Callable[[Any], Any]) -> Any:
        """Run ``func(client)``; translate failures, renew an expired auth token once."""
        for attempt in (1, 2):
            client = self.client
            try:
                return func(client)
            except EtcdError:
                raise
            except Exception as error:
                if attempt == 1 and is_auth_error(error) and self.config.user is not None:
                    self._rebuild(client)
                    continue
                raise self._error(what, error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the operations we use ------------------------------------------------------------

    def get_prefix(self, prefix: str, *, count_only: bool = False) -> Any:
        """Range response (kvs, count, header) for every key under ``prefix``."""
        return self.call("reading %s" % prefix,
                         lambda c: c.get_prefix_response(prefix, count_only=count_only))

    def get(self, key: str) -> Any:
        return self.call("reading %s" % key, lambda c: c.get_response(key))

    def put(self, key: str, value: bytes, lease_id: int | None = None) -> Any:
        return self.call("writing %s" % key, lambda c: c.put(key, value, lease=lease_id))

    def delete(self, key: str) -> Any:
        return self.call("deleting %s" % key, lambda c: c.delete(key))

    def grant(self, ttl: int) -> int:
        return self.call("granting a lease", lambda c: c.lease(ttl)).id

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; the TTL etcd answered (0 or less: the lease is gone)."""
        def refresh(client: Any) -> int:
            ttl = 0
            for response in client.refresh_lease(lease_id):
                ttl = response.TTL
            return ttl
        return self.call("refreshing lease %x" % lease_id, refresh)

    def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on a lease (-1 when it does not exist)."""
        return self.call("reading lease %x" % lease_id,
                         lambda c: c.get_lease_info(lease_id).TTL)

    def revoke(self, lease_id: int) -> None:
        self.call("revoking lease %x" % lease_id, lambda c: c.revoke_lease(lease_id))

    def compact(self, revision: int) -> None:
        self.call("compacting", lambda c: c.compact(revision, physical=True))

    def watch_prefix(self, prefix: str, start_revision: int,
                     callback: Callable[[Any], None]) -> WatchHandle:
        """Watch ``prefix`` from ``start_revision``; ``callback`` runs on the etcd watcher thread.

        Never call this from inside a watch callback (defect 6: it would deadlock).
        """
        def add(client: Any) -> WatchHandle:
            watch_id = client.add_watch_prefix_callback(prefix, callback,
                                                        start_revision=start_revision)
            return WatchHandle(self, client, watch_id)
        return self.call("watching %s" % prefix, add)

    def watch_key(self, key: str, start_revision: int,
                  callback: Callable[[Any], None]) -> WatchHandle:
        """Watch one exact key (a registrar watches its own record). Same rules as above."""
        def add(client: Any) -> WatchHandle:
            watch_id = client.add_watch_callback(key, callback, start_revision=start_revision)
            return WatchHandle(self, client, watch_id)
        return self.call("watching %s" % key, add)

    def reset_watcher(self) -> None:
        """Drop the client's watcher stream so the next watch opens a new one (maybe elsewhere)."""
        with self._lock:
            client = self._client
        if client is not None:
            old = client._stubs.pop("watcher", None)
            if old is not None:
                try:
                    old.close()
                except Exception:  # pragma: no cover
                    pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # pragma: no cover
                pass

    def __enter__(self) -> "EtcdConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def header_of(response: Any) -> tuple[int, int]:
    """(revision, cluster_id) of a response header."""
    return response.header.revision, response.header.cluster_id


def is_compacted(error: BaseException) -> bool:
    return isinstance(error, etcd3.exceptions.RevisionCompactedError)


def events_of(response: Any) -> Iterable[Any]:
    return getattr(response, "events", ()) or ()


def is_put_event(event: Any) -> bool:
    return isinstance(event, etcd3.events.PutEvent)



def is_delete_event(event: Any) -> bool:
    return isinstance(event, etcd3.events.DeleteEvent)

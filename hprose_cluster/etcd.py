"""The only module that talks to the etcd client library.

``EtcdConfig`` says where etcd is and how to reach it (endpoints, prefix, timeouts, TLS, auth),
from arguments or ``HPROSE_CLUSTER_*`` environment variables.  ``EtcdConnection`` wraps one
``etcd3`` client and works around its known defects (ETCD.md):

1. the client is always built as ``MultiEndpointEtcd3Client`` with ``failover=True`` and a short
   ``time_retry``, so one failed call never disables an endpoint for minutes;
2. with user/password on a plaintext channel, ``call_credentials`` is cleared after construction
   (the token still travels as metadata);
3. the auth token is never refreshed by the library: on ``UNAUTHENTICATED`` we rebuild the client
   (a fresh token) and retry once; the rebuild ends the old client's watch streams, which
   reaches every watch callback as an error, so watchers re-watch (``generation`` also tells);
   a watch is created right after a read of its range, so never with an expired token (etcd
   would cancel it without etcd3 noticing);
4. lease-not-found comes back as ``TTL == 0``: ``keepalive`` returns the TTL and leaves the
   judgement to the registrar;
5. a watch stream that ends, with or without an error, always reaches the callback as an
   exception;
6. a watch is always created with a timeout and never from inside a watch callback.

Every failure is raised as ``EtcdError`` naming the endpoints and the cause (TLS failures,
refused credentials and missing permissions in words an operator can act on).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import etcd3
import etcd3.etcdrpc
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


# gRPC's own reconnect backoff grows to 120 s while etcd is unreachable, so after a long
# outage a channel could wait minutes before it even tries the returned server.  Capped at 1 s,
# registrations and watches are back about a second after etcd answers again.
# gRPC also shares subchannels between channels of one process by default: a new connection
# (a server starting right after etcd came back) would inherit a subchannel still waiting out
# its backoff and fail at once with UNAVAILABLE.  Each of our channels owns its subchannels.
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.use_local_subchannel_pool", 1)]


def _parse_endpoint(text: Any) -> tuple[str, int, bool | None]:
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
            host, port, secure = _parse_endpoint(text)
            tls = tls or bool(secure)
            normalized.append(_format_endpoint(host, port))
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


def _status_code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return code()
        except Exception:  # pragma: no cover - defensive: exotic RpcError
            return None
    return None


def _rpc_error(error: BaseException) -> BaseException | None:
    """The gRPC error behind ``error``: etcd3 re-raises some (UNAVAILABLE, DEADLINE_EXCEEDED)
    as its own exceptions without a message, leaving the real one as ``__context__``."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        if _status_code(current) is not None:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


# What an operator should check, for the causes that are easy to misread in gRPC's words.
_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED",
     "TLS certificate verification failed: the etcd server certificate is not signed by the "
     "CA in ca_file (or the system store), or does not name this host"),
    ("BAD_CERTIFICATE",
     "the etcd server refused our TLS client certificate (missing, or not signed by a CA it "
     "trusts): check cert_file/key_file"),
    ("CERTIFICATE_REQUIRED",
     "the etcd server requires a TLS client certificate: set cert_file/key_file"),
    ("WRONG_VERSION_NUMBER",
     "TLS/plaintext mismatch: the etcd server does not speak TLS on this port"),
    ("Handshake read failed",
     "the TLS handshake got no answer: the endpoint closed the connection, so it is a "
     "plaintext etcd (drop https:// and ca_file) or not an etcd server"),
    ("Stream removed",
     "the connection to etcd was lost (etcd stopped or restarted)"),
    ("Trying to connect an http1.x server",
     "not an etcd server: the endpoint answered in HTTP/1"),
    ("before receiving SETTINGS frame",
     "the endpoint accepted the connection but gave no HTTP/2 answer in time: not an etcd "
     "server, or a paused or overloaded one"),
)
_FAILED_ENDPOINT = re.compile(r"ipv[46]:(\[[^\]]+\]|[^:\s]+):(\d+): Socket closed")


def _speaks_tls(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host:port`` answers a TLS handshake (certificate not checked): tells a TLS
    etcd reached in plaintext from a server that is not etcd at all, as both just close a
    plaintext gRPC connection."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(sock, do_handshake_on_connect=False) as tls:
                tls.do_handshake()
        return True
    except ssl.SSLError as error:
        # A TLS server that refused something of ours (its alert is TLS too), unlike a
        # plaintext peer's bytes (wrong version) or a close (EOF).
        return not isinstance(error, ssl.SSLEOFError) and "WRONG_VERSION" not in str(error)
    except OSError:
        return False


def _closed_without_answer(message: str, tls: bool) -> str | None:
    """The plaintext "Socket closed" case: a TLS etcd, or something that is not etcd."""
    found = _FAILED_ENDPOINT.search(message)
    if tls or found is None:
        return None
    host, port = found.group(1), int(found.group(2))
    endpoint = _format_endpoint(host.strip("[]"), port)
    if _speaks_tls(host, port):
        return ("etcd at %s speaks TLS and this connection is plaintext: use https://%s "
                "(and ca_file if its certificate is not in the system store)" % (endpoint,
                                                                                  endpoint))
    return ("not an etcd server: %s closed the connection without answering" % endpoint)


def _cause(error: BaseException, tls: bool | None = None) -> str:
    """One line saying why an etcd request failed, with the gRPC status and details.

    ``tls`` (the configuration's) allows the one diagnosis gRPC's words cannot give: a
    plaintext connection closed by the peer is probed to tell a TLS etcd from a non-etcd.
    """
    rpc = _rpc_error(error)
    source = rpc if rpc is not None else error
    details = getattr(source, "details", None)
    text = None
    if callable(details):
        try:
            text = details()
        except Exception:  # pragma: no cover
            text = None
    if text:
        code = _status_code(source)
        message = "%s: %s" % (code.name if code else "error", text)
    elif isinstance(error, etcd3.exceptions.NoServerAvailableError):
        message = "every endpoint failed within the last second; retrying shortly"
    else:
        message = " ".join((str(error) or type(error).__name__).split())
    if tls is not None:
        hint = _closed_without_answer(message, tls)
        if hint is not None:
            return "%s (%s)" % (hint, message)
    for marker, hint in _HINTS:
        if marker in message:
            return "%s (%s)" % (hint, message)
    return message


def _bare(error: BaseException) -> BaseException:
    """What an EtcdError is chained from: the gRPC error behind ``error`` (else ``error``)
    without its traceback through grpc and etcd3 internals or the etcd3 exception it was
    re-raised as, so a Python traceback stays a few lines with the real cause in it."""
    cause = _rpc_error(error) or error
    cause.__traceback__ = None
    cause.__suppress_context__ = True
    return cause


def is_auth_error(error: BaseException) -> bool:
    """An invalid or expired auth token (etcd answers UNAUTHENTICATED)."""
    rpc = _rpc_error(error)
    return rpc is not None and _status_code(rpc) == grpc.StatusCode.UNAUTHENTICATED


def is_permission_denied(error: BaseException) -> bool:
    rpc = _rpc_error(error)
    return rpc is not None and _status_code(rpc) == grpc.StatusCode.PERMISSION_DENIED


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


class _StreamError(Exception):
    """The keepalive stream ended or was closed (``call`` turns it into an EtcdError naming
    the endpoints)."""


class _NoAnswer(_StreamError):
    """A refresh that etcd did not answer in time (the endpoint is unreachable or paused)."""


class _KeepaliveStream:
    """One long-lived LeaseKeepAlive stream carrying the refreshes of every lease of a client.

    etcd3's ``refresh_lease`` opens a new bidirectional stream for every refresh (about 1 ms of
    client CPU, several messages): a thousand registrations in one process then cost most of a
    core and fall behind a 1 s heartbeat.  Here a refresh is one message on a stream that stays
    open, and etcd's replies are handed to the waiting callers by lease ID (etcd answers a
    refresh of an unknown lease with TTL 0, which the registrar treats as a lost lease).

    A stream that fails fails every refresh waiting on it and is replaced by the next refresh;
    a refresh with no answer within the timeout breaks the stream too (a paused etcd holds it
    open without answering).
    """

    def __init__(self, client: Any):
        self.client = client
        self._requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._waiters: dict[int, list[list[Any]]] = {}
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._responses = client.leasestub.LeaseKeepAlive(
            self._request_iterator(), credentials=client.call_credentials,
            metadata=client.metadata)
        self._reader = threading.Thread(target=self._read, name="hprose-cluster-keepalive",
                                        daemon=True)
        self._reader.start()

    def _request_iterator(self) -> Iterable[Any]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        error: BaseException | None = None
        try:
            for response in self._responses:
                with self._lock:
                    waiters = self._waiters.get(response.ID)
                    waiter = waiters.pop(0) if waiters else None
                    if waiters == []:
                        del self._waiters[response.ID]
                if waiter is not None:
                    waiter[1] = response.TTL
                    waiter[0].set()
        except grpc.RpcError as failure:
            error = failure
        finally:
            self._fail(error or _StreamError("the etcd keepalive stream ended"))

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
            waiters, self._waiters = self._waiters, {}
        for pending in waiters.values():
            for waiter in pending:
                waiter[2] = error
                waiter[0].set()

    def refresh(self, lease_id: int, timeout: float) -> int:
        waiter: list[Any] = [threading.Event(), None, None]  # done, ttl, error
        with self._lock:
            if self.error is not None:
                raise self.error
            self._waiters.setdefault(lease_id, []).append(waiter)
        self._requests.put(etcd3.etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
        if not waiter[0].wait(timeout):
            self.close()
            raise _NoAnswer("no answer to a lease refresh within %.3g s" % timeout)
        if waiter[2] is not None:
            raise waiter[2]
        return waiter[1]

    def close(self) -> None:
        self._fail(_StreamError("the etcd keepalive stream was closed"))
        self._requests.put(None)
        self._responses.cancel()


class EtcdConnection:
    """One etcd client for one process part (a Registrar, a Discovery), with our workarounds."""

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._stream: _KeepaliveStream | None = None
        self._watch_lock = threading.Lock()
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
                                            time_retry=1.0, opts=_CHANNEL_OPTIONS))
        try:
            client = etcd3.MultiEndpointEtcd3Client(
                endpoints, timeout=config.timeout, user=config.user,
                password=config.password, failover=True)
        except Exception as error:
            for endpoint in endpoints:
                endpoint.close()
            what = "cannot connect to etcd"
            if config.user is not None:
                what += " as user %r" % config.user
            raise self._error(what, error) from _bare(error)
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
        cause = _cause(error, self.config.tls)
        rpc = _rpc_error(error)
        if rpc is not None and _status_code(rpc) == grpc.StatusCode.DEADLINE_EXCEEDED:
            cause = "no answer within the %gs timeout (%s)" % (self.config.timeout, cause)
        elif is_permission_denied(error):
            cause += (" (etcd user %r lacks the permission: check its role)" % self.config.user
                      if self.config.user is not None else "")
        return EtcdError("%s (etcd %s): %s" % (what, self.config.describe(), cause))

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
                raise self._error(what, error) from _bare(error)
        raise AssertionError("unreachable")  # pragma: no cover

    def on_any_endpoint(self, step: Callable[[], Any]) -> Any:
        """Run ``step`` (which calls etcd), trying once per endpoint: a call to a dead member
        marks it failed and the next call goes to another one, so a dead member in the list
        does not fail a server's or a client's start.  The last failure is raised."""
        for attempt in range(len(self.config.endpoints)):
            try:
                return step()
            except EtcdError:
                if attempt == len(self.config.endpoints) - 1:
                    raise
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
        """Refresh a lease once; the TTL etcd answered (0 or less: the lease is gone).

        Every lease of this connection is refreshed over one long-lived stream (see
        ``_KeepaliveStream``); a failed stream moves to another endpoint, as a failed call does.
        """
        def refresh(client: Any) -> int:
            stream = self._keepalive_stream(client)
            try:
                return stream.refresh(lease_id, self.config.timeout)
            except grpc.RpcError as error:
                _fail_endpoint(client, error)
                raise
            except _NoAnswer:
                _fail_endpoint(client, None)
                raise
        return self.call("refreshing lease %x" % lease_id, refresh)

    def _keepalive_stream(self, client: Any) -> _KeepaliveStream:
        with self._lock:
            stream = self._stream
            if stream is None or stream.client is not client or stream.error is not None:
                if stream is not None:
                    stream.close()
                stream = self._stream = _KeepaliveStream(client)
            return stream

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
        return self._watch("watching %s" % prefix, prefix, True, start_revision, callback)

    def watch_key(self, key: str, start_revision: int,
                  callback: Callable[[Any], None]) -> WatchHandle:
        """Watch one exact key (a registrar watches its own record). Same rules as above."""
        return self._watch("watching %s" % key, key, False, start_revision, callback)

    def _watch(self, what: str, key: str, prefix: bool, start_revision: int,
               callback: Callable[[Any], None]) -> WatchHandle:
        """Create a watch whose failure always reaches ``callback`` as an exception.

        Two etcd3 behaviours would otherwise leave a watch silently dead:

        * with auth on, etcd answers a watch created with an expired token (or without the
          permission) by "created, then canceled", which etcd3 takes for success and never
          reports.  So we first make one count-only read of the same range through ``call()``:
          it renews an expired token (or raises a clear permission error) right before the
          watch is created with the fresh token;
        * a watch stream that ends without an error (its client was closed or rebuilt) calls
          back with ``None``; we hand the callback an ``EtcdError`` instead, so the watcher
          re-watches at once.

        Creations are serialized on our own lock: etcd3 lets one creation wait at a time and
        wakes *every* waiting thread each time one finishes, so a thousand registrars of one
        connection re-watching at once (after an etcd restart) spent seconds in wake-ups and
        missed their lease refreshes.
        """
        endpoint = self.config.describe()

        def guarded(response: Any) -> None:
            if response is None:
                response = EtcdError("the watch stream to etcd %s ended" % endpoint)
            elif isinstance(response, Exception) and not isinstance(
                    response, (EtcdError, etcd3.exceptions.RevisionCompactedError)):
                # one line naming the endpoint, not gRPC's multi-line repr (no probe: this
                # runs on the watcher thread)
                error = EtcdError("%s (etcd %s): %s" % (what, endpoint, _cause(response)))
                error.__cause__ = _bare(response)
                response = error
            callback(response)

        def add(client: Any) -> WatchHandle:
            with self._watch_lock:
                return add_one(client)

        def add_one(client: Any) -> WatchHandle:
            if self.config.user is not None:
                if prefix:
                    client.get_prefix_response(key, count_only=True)
                else:
                    client.get_response(key, count_only=True)
            if prefix:
                watch_id = client.add_watch_prefix_callback(key, guarded,
                                                            start_revision=start_revision)
            else:
                watch_id = client.add_watch_callback(key, guarded, start_revision=start_revision)
            return WatchHandle(self, client, watch_id)
        return self.call(what, add)

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
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
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


def _fail_endpoint(client: Any, error: grpc.RpcError | None) -> None:
    """What etcd3 does after a failed unary call, for our keepalive stream: an unreachable or
    silent endpoint is marked failed, so the next stream goes to another member."""
    code = error.code() if error is not None else grpc.StatusCode.DEADLINE_EXCEEDED
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.INTERNAL):
        try:
            client.endpoint_in_use.fail()
            client._clear_old_stubs()
        except Exception:  # pragma: no cover - the client may be closing
            pass

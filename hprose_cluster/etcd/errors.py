"""The etcd failures our code branches on, as types: nothing outside this package reads the
text of an etcd error to decide what to do.

Every class is an ``errors.EtcdError``, so ``except EtcdError`` keeps catching all of them.
``translate()`` turns whatever the etcd3 client or gRPC raised into one of them, with a
message naming the endpoints and the cause in words an operator can act on (TLS failures,
refused credentials, missing permissions).
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import TYPE_CHECKING

import etcd3.exceptions
import grpc

from ..errors import EtcdError
from .config import format_endpoint

if TYPE_CHECKING:
    from .config import EtcdConfig

__all__ = ["EtcdCompacted", "EtcdNoLeader", "EtcdPermissionDenied", "EtcdUnauthenticated",
           "EtcdUnavailable", "translate"]


class EtcdCompacted(EtcdError):
    """A watch asked for revisions etcd has compacted away: re-read the range instead."""

    def __init__(self, message: str, compacted_revision: int = 0):
        super().__init__(message)
        self.compacted_revision = compacted_revision


class EtcdUnavailable(EtcdError):
    """The member could not be reached, or did not answer within the timeout.  Another
    member (or the same one, later) may answer: retry, with backoff."""


class EtcdNoLeader(EtcdUnavailable):
    """The member answered but has no leader (cut off from the rest of its cluster): the
    request was refused before it ran, so it may go to another member at once."""


class EtcdUnauthenticated(EtcdError):
    """etcd refused our credentials or our auth token (wrong password, expired token)."""


class EtcdPermissionDenied(EtcdError):
    """The etcd user lacks the permission for this key range."""


class StreamError(Exception):
    """A long-lived stream of ours (the keepalive stream) ended or was closed."""


class NoAnswer(StreamError):
    """A request on one of our streams that etcd did not answer in time."""


def status_code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    if callable(code):
        try:
            result = code()
        except Exception:  # pragma: no cover - defensive: exotic RpcError
            return None
        return result if isinstance(result, grpc.StatusCode) else None
    return None


def rpc_error(error: BaseException) -> BaseException | None:
    """The gRPC error behind ``error``: etcd3 re-raises some (UNAVAILABLE, DEADLINE_EXCEEDED)
    as its own exceptions without a message, leaving the real one as ``__context__``."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        if status_code(current) is not None:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _details(error: BaseException | None) -> str:
    details = getattr(error, "details", None)
    if callable(details):
        try:
            return str(details() or "")
        except Exception:  # pragma: no cover
            return ""
    return ""


def is_no_leader(error: BaseException) -> bool:
    """etcd's answer to a request that requires a leader on a member that has none."""
    rpc = rpc_error(error)
    return (rpc is not None and status_code(rpc) == grpc.StatusCode.UNAVAILABLE
            and "no leader" in _details(rpc))


def is_unknown_deadline(error: BaseException) -> bool:
    """A timed-out request on a member without a leader sometimes comes back as UNKNOWN
    "context deadline exceeded" instead of DEADLINE_EXCEEDED; etcd3 does not fail over on it."""
    rpc = rpc_error(error)
    return (rpc is not None and status_code(rpc) == grpc.StatusCode.UNKNOWN
            and "deadline exceeded" in _details(rpc))


def is_auth_error(error: BaseException) -> bool:
    """An invalid or expired auth token (etcd answers UNAUTHENTICATED)."""
    rpc = rpc_error(error)
    return rpc is not None and status_code(rpc) == grpc.StatusCode.UNAUTHENTICATED


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

_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_UNAVAILABLE_TYPES = (etcd3.exceptions.NoServerAvailableError, etcd3.exceptions.WatchTimedOut,
                      etcd3.exceptions.ConnectionFailedError,
                      etcd3.exceptions.ConnectionTimeoutError, StreamError)


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
    endpoint = format_endpoint(host.strip("[]"), port)
    if _speaks_tls(host, port):
        return ("etcd at %s speaks TLS and this connection is plaintext: use https://%s "
                "(and ca_file if its certificate is not in the system store)"
                % (endpoint, endpoint))
    return "not an etcd server: %s closed the connection without answering" % endpoint


def _cause(error: BaseException, tls: bool | None = None) -> str:
    """One line saying why an etcd request failed, with the gRPC status and details.

    ``tls`` (the configuration's) allows the one diagnosis gRPC's words cannot give: a
    plaintext connection closed by the peer is probed to tell a TLS etcd from a non-etcd.
    None: no probe (on a watcher thread, which must not block on a connection).
    """
    rpc = rpc_error(error)
    source = rpc if rpc is not None else error
    text = _details(source)
    if text:
        code = status_code(source)
        message = "%s: %s" % (code.name if code else "error", text)
    elif isinstance(error, etcd3.exceptions.NoServerAvailableError):
        message = "every endpoint failed within the last second; retrying shortly"
    elif isinstance(error, etcd3.exceptions.WatchTimedOut):
        message = "no answer to a watch creation within the timeout"
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


def bare(error: BaseException) -> BaseException:
    """What an EtcdError is chained from: the gRPC error behind ``error`` (else ``error``)
    without its traceback through grpc and etcd3 internals or the etcd3 exception it was
    re-raised as, so a Python traceback stays a few lines with the real cause in it."""
    cause = rpc_error(error) or error
    cause.__traceback__ = None
    cause.__suppress_context__ = True
    return cause


def translate(what: str, error: BaseException, config: "EtcdConfig",
              probe: bool = True) -> EtcdError:
    """``error`` (from etcd3 or gRPC) as the EtcdError subclass code can branch on, saying
    ``what`` failed, on which endpoints, and why.  The caller chains ``bare(error)``.

    ``probe`` False: never open a connection to diagnose a closed one (watcher threads)."""
    if isinstance(error, EtcdError):
        return error
    where = "%s (etcd %s)" % (what, config.describe())
    if isinstance(error, etcd3.exceptions.RevisionCompactedError):
        return EtcdCompacted("%s: revision %d is compacted" % (where, error.compacted_revision),
                             error.compacted_revision)
    cause = _cause(error, config.tls if probe else None)
    rpc = rpc_error(error)
    code = status_code(rpc) if rpc is not None else None
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return EtcdUnauthenticated("%s: %s" % (where, cause))
    if code == grpc.StatusCode.PERMISSION_DENIED:
        if config.user is not None:
            cause += " (etcd user %r lacks the permission: check its role)" % config.user
        return EtcdPermissionDenied("%s: %s" % (where, cause))
    if is_no_leader(error):
        return EtcdNoLeader("%s: the member has no leader (cut off from its cluster?): %s"
                            % (where, cause))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or is_unknown_deadline(error):
        return EtcdUnavailable("%s: no answer within the %gs timeout (%s)"
                               % (where, config.timeout, cause))
    if code in _UNAVAILABLE_CODES or isinstance(error, _UNAVAILABLE_TYPES):
        return EtcdUnavailable("%s: %s" % (where, cause))
    return EtcdError("%s: %s" % (where, cause))

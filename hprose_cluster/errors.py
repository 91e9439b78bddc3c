"""One exception tree for everything hprose-cluster raises.

Every error a user can act on names what was wrong (the domain, the server URL, the etcd
endpoint, the field) and chains the original exception.  Business errors sent by a server
(an hprose ``E`` reply) stay ``hprose.HproseException`` so code written for hprose keeps working.
"""

from __future__ import annotations


class HproseClusterError(Exception):
    """Base of every error raised by hprose-cluster itself."""


class ConfigError(HproseClusterError, ValueError):
    """A bad argument or setting: a domain, UUID, URL, CPU count, endpoint or option."""


class EtcdError(HproseClusterError):
    """etcd could not be reached, refused us, or answered something we cannot use."""


class RegistrationError(EtcdError):
    """A server record could not be written to (or removed from) etcd."""


class NoServerAvailable(HproseClusterError):
    """A call found no server it could try in its domain."""


class TransportError(HproseClusterError):
    """A call failed below hprose: connect, send, receive or framing.

    ``sent`` says whether the request may have reached the server.  When it is False the call
    certainly did not execute anywhere and may be retried on another server whatever it does.
    """

    sent: bool = True

    def __init__(self, message: str, *, url: str | None = None, sent: bool | None = None):
        super().__init__(message)
        self.url = url
        if sent is not None:
            self.sent = sent


class ConnectError(TransportError):
    """The connection could not be opened: the request never left this process."""

    sent = False


class CallTimeout(TransportError):
    """No complete reply arrived within the call's timeout.

    ``sent`` is False when the time ran out before any of the request went out (waiting for a
    connection, or behind a request the server would not read).
    """


class FrameError(TransportError):
    """A peer sent bytes that are not a valid frame (oversized, truncated or garbled)."""
